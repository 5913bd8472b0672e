package dev.rlsscreen.fhirserver;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.IInstanceValidatorModule;
import ca.uhn.fhir.validation.ValidationResult;
import org.hl7.fhir.r4.model.Observation;
import org.hl7.fhir.r4.model.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.context.event.EventListener;
import org.springframework.stereotype.Component;

/**
 * The instance validator loads the R4 StructureDefinitions/ValueSets lazily, so the first $validate call
 * would take 5-20 s on a 2-core machine. Once the server is up, validate one Observation in a background
 * thread so that the caches are warm by the time tests call $validate. It does not delay readiness.
 */
@Component
public class ValidatorWarmUp {

	private static final Logger LOG = LoggerFactory.getLogger(ValidatorWarmUp.class);

	private final FhirContext fhirContext;
	private final IInstanceValidatorModule instanceValidator;
	private final boolean enabled;

	public ValidatorWarmUp(
			FhirContext fhirContext,
			IInstanceValidatorModule instanceValidator,
			@Value("${fhir.validation.warm-up:true}") boolean enabled) {
		this.fhirContext = fhirContext;
		this.instanceValidator = instanceValidator;
		this.enabled = enabled;
	}

	@EventListener(ApplicationReadyEvent.class)
	public void warmUp() {
		if (!enabled) {
			return;
		}
		Thread thread = new Thread(this::validateSample, "validator-warm-up");
		thread.setDaemon(true);
		thread.setPriority(Thread.MIN_PRIORITY);
		thread.start();
	}

	private void validateSample() {
		long start = System.nanoTime();
		try {
			Observation sample = new Observation();
			sample.setStatus(Observation.ObservationStatus.FINAL);
			sample.getCode().addCoding().setSystem("http://loinc.org").setCode("2276-4");
			sample.setSubject(new Reference("Patient/warm-up"));
			FhirValidator validator = fhirContext.newValidator();
			validator.registerValidatorModule(instanceValidator);
			ValidationResult result = validator.validateWithResult(sample);
			LOG.info("Validator warm-up done in {} ms ({} messages)",
					(System.nanoTime() - start) / 1_000_000, result.getMessages().size());
		} catch (RuntimeException e) {
			LOG.warn("Validator warm-up failed (the first $validate call will just be slower): {}", e.toString());
		}
	}
}

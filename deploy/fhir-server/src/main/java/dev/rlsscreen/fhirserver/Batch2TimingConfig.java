package dev.rlsscreen.fhirserver;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.InitializingBean;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * Batch2 (bulk export) moves a job from one step to the next in its maintenance pass, which HAPI runs
 * once a minute by default: a tiny Group export then takes 2-3 minutes. On this single-node test server a
 * pass every few seconds is cheap, so exports finish in seconds. The interval is set before HAPI schedules
 * its jobs (that happens when the application context has been refreshed).
 */
@Configuration
public class Batch2TimingConfig {

	private static final Logger LOG = LoggerFactory.getLogger(Batch2TimingConfig.class);

	@Bean
	public InitializingBean batch2MaintenanceInterval(
			IJobMaintenanceService maintenanceService,
			@Value("${fhir.batch2.maintenance-interval-ms:5000}") long intervalMillis) {
		return () -> {
			if (maintenanceService instanceof JobMaintenanceServiceImpl impl) {
				impl.setScheduledJobFrequencyMillis(intervalMillis);
				LOG.info("Batch2 job maintenance pass every {} ms", intervalMillis);
			} else {
				LOG.warn("Batch2 maintenance service is {}; interval left at HAPI's default",
						maintenanceService.getClass().getName());
			}
		};
	}
}

package dev.rlsscreen.fhirserver;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Import;

/**
 * Local development/test FHIR R4 server for rls-screen.
 *
 * <p>HAPI FHIR JPA (R4) on an in-memory H2 database, served by embedded Tomcat at /fhir.
 * The HAPI configuration classes below supply the DAOs, search, transactions, validation
 * support chain, Batch2 (bulk export) and subscription matching/delivery; {@link PersistenceConfig}
 * and {@link RestServerConfig} add the settings and beans that an application has to provide.
 */
@SpringBootApplication(
		excludeName = {
			// HAPI builds its own entity manager factory and Spring Data repositories
			"org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration",
			"org.springframework.boot.autoconfigure.data.jpa.JpaRepositoriesAutoConfiguration",
			// HAPI's schema is created by Hibernate (hbm2ddl=update); no migrations
			"org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration",
			// HAPI runs its own Quartz scheduler
			"org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration",
			// Elasticsearch client jars come in with Hibernate Search; no Elasticsearch is used
			"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration",
			"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration",
			// Thymeleaf is on the classpath for HAPI's narrative generator only; no web templates here
			"org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration",
		})
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	ThreadPoolFactoryConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
})
public class FhirDevServerApplication {

	public static void main(String[] args) {
		SpringApplication.run(FhirDevServerApplication.class, args);
	}
}

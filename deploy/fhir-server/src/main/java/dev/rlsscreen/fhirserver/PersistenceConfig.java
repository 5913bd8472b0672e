package dev.rlsscreen.fhirserver;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import jakarta.persistence.EntityManagerFactory;
import java.util.Map;
import javax.sql.DataSource;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.transaction.annotation.EnableTransactionManagement;

/** Storage settings, the JPA entity manager factory and the other beans HAPI expects the application to define. */
@Configuration
@EnableTransactionManagement
public class PersistenceConfig {

	private static final Logger LOG = LoggerFactory.getLogger(PersistenceConfig.class);

	@Bean
	public JpaStorageSettings jpaStorageSettings() {
		JpaStorageSettings settings = new JpaStorageSettings();
		// Tests write and then search at once: never answer a search from a cached earlier result.
		settings.setReuseCachedSearchResultsForMillis(null);
		// Client-assigned ids (PUT Patient/pat-x1) allowed as long as they are not purely numeric.
		settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
		// No Lucene/Elasticsearch: full-text indexing off (_text/_content searches are unavailable).
		settings.setHibernateSearchIndexFullText(false);
		settings.setHibernateSearchIndexSearchParams(false);
		settings.setAdvancedHSearchIndexing(false);
		// Bulk export: every kick-off runs a fresh job; let Batch2 move gated steps on without waiting for
		// the next maintenance pass.
		settings.setEnableBulkExportJobReuse(false);
		settings.setJobFastTrackingEnabled(true);
		settings.setEnableTaskBulkExportJobExecution(true);
		return settings;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings(); // partitioning off
	}

	/**
	 * R4 rest-hook Subscriptions (rls-screen's re-screen on new results, docs/subscriptions.md). Our launcher does
	 * not read the jpaserver-starter's {@code hapi.fhir.subscription.*} properties; these {@code fhir.subscription.*}
	 * properties are its own. HAPI only calls endpoints that match the regex (an allowlist: loopback by default),
	 * and only accepts criteria it can match in memory, so a Subscription never adds a database search to every
	 * write.
	 */
	@Bean
	public SubscriptionSettings subscriptionSettings(
			@Value("${fhir.subscription.resthook-enabled:true}") boolean restHookEnabled,
			@Value("${fhir.subscription.resthook-endpoint-regex:}") String endpointRegex,
			@Value("${fhir.subscription.only-in-memory:true}") boolean onlyInMemory) {
		SubscriptionSettings settings = new SubscriptionSettings();
		if (restHookEnabled) {
			settings.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		}
		if (!endpointRegex.isBlank()) {
			settings.setRestHookEndpointUrlValidationRegex(endpointRegex);
		}
		settings.setOnlyAllowInMemorySubscriptions(onlyInMemory);
		LOG.info("Subscriptions: rest-hook {}, endpoints matching {}, in-memory matching only: {}",
				restHookEnabled ? "on" : "off", settings.getRestHookEndpointUrlValidationRegex(), onlyInMemory);
		return settings;
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource);
		Map<String, Object> props = factory.getJpaPropertyMap();
		props.put("hibernate.dialect", "ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect");
		props.put("hibernate.hbm2ddl.auto", "update");
		props.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		props.put("hibernate.implicit_naming_strategy",
				"org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy");
		props.put("hibernate.physical_naming_strategy",
				"org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy");
		props.put("hibernate.jdbc.batch_size", "20");
		props.put("hibernate.format_sql", "false");
		props.put("hibernate.show_sql", "false");
		props.put("hibernate.cache.use_query_cache", "false");
		props.put("hibernate.cache.use_second_level_cache", "false");
		props.put("hibernate.cache.use_structured_entries", "false");
		props.put("hibernate.cache.use_minimal_puts", "false");
		// Hibernate Search off: it would otherwise look for a Lucene/Elasticsearch backend.
		props.put("hibernate.search.enabled", "false");
		LOG.info("Entity manager factory: H2 in memory, Hibernate Search disabled");
		return factory;
	}

	@Primary
	@Bean
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		JpaTransactionManager manager = new JpaTransactionManager();
		manager.setEntityManagerFactory(entityManagerFactory);
		return manager;
	}

	/** Binary content (bulk export output files) is kept in the database. */
	@Bean
	public DatabaseBinaryContentStorageSvcImpl binaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	/** Email subscriptions are not enabled; the subscription module still wants a sender bean. */
	@Bean
	public IEmailSender emailSender() {
		return details -> LOG.warn("Email subscription delivery is not enabled on this server; message dropped");
	}
}

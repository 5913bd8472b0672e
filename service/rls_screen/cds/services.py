"""The CDS services this module offers, as discovery describes them.

A CDS Hooks service has one hook, so the order check is two service entries (order-select and
order-sign) sharing one implementation. Prefetch templates come from ``prefetch_templates`` so that
discovery, the fallback reads and the docs cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from rls_screen.cds.models import Discovery, ServiceDescriptor
from rls_screen.cds.prefetch import prefetch_templates
from rls_screen.contract import CONTRACT_KEYS
from rls_screen.knowledge import Knowledge
from rls_screen.wording import sources_text

PATIENT_VIEW_SERVICE = "rls-secondary-causes"
ORDER_SELECT_SERVICE = "rls-order-check-select"
ORDER_SIGN_SERVICE = "rls-order-check-sign"
USAGE = (
    "Send the prefetch when you can; a missing key is read from fhirServer with fhirAuthorization "
    "(the server must be on the service's allowlist). The bearer JWT must be ES384 or RS384 from a "
    "trusted issuer, with aud set to this endpoint's URL."
)


# Every service asks for the whole data contract (D2): one patient, one Assessment, whichever hook.


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    """May name ``{window_days}`` (rule set selection.windowDays) and ``{iron_first_sources}`` (the short labels of
the medication rule's citations, e.g. 'AASM 2024'): filled from the rule set at discovery."""
    prefetch_keys: tuple[str, ...]


SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id=PATIENT_VIEW_SERVICE,
        hook="patient-view",
        title="RLS: treatable secondary causes in the labs",
        description=(
            "For a patient with restless legs syndrome (active Condition SNOMED CT 32914008 or ICD-10-CM "
            "G25.81), checks the labs of the last {window_days} days for iron deficiency or iron below the RLS target, "
            "missing iron studies, anaemia, reduced kidney function or kidney failure, and magnesium, "
            "potassium or calcium changes that mimic leg symptoms; returns a card only for what can be acted on."
        ),
        prefetch_keys=CONTRACT_KEYS,
    ),
    ServiceDefinition(
        id=ORDER_SELECT_SERVICE,
        hook="order-select",
        title="RLS: iron first, and medicines that may aggravate RLS (order-select)",
        description=(
            "When a dopaminergic drug (pramipexole, ropinirole, rotigotine, levodopa) or an alpha-2-delta "
            "ligand is selected for a patient with RLS while iron studies are missing or iron is low, says "
            "so ({iron_first_sources}: iron first); when a medicine that may aggravate RLS is selected, warns."
        ),
        prefetch_keys=CONTRACT_KEYS,
    ),
    ServiceDefinition(
        id=ORDER_SIGN_SERVICE,
        hook="order-sign",
        title="RLS: iron first, and medicines that may aggravate RLS (order-sign)",
        description=(
            "The order check of rls-order-check-select, on every draft order at signing: RLS drugs while "
            "iron studies are missing or iron is low ({iron_first_sources}), and medicines that may aggravate RLS."
        ),
        prefetch_keys=CONTRACT_KEYS,
    ),
)
SERVICES_BY_ID = {service.id: service for service in SERVICES}


def discovery(knowledge: Knowledge) -> Discovery:
    templates = prefetch_templates(knowledge)
    rules = knowledge.ruleset
    words = {
        "window_days": rules.selection.window_days,
        "iron_first_sources": sources_text(rules, rules.cite(rules.medications.citations)),
    }
    return Discovery(
        services=[
            ServiceDescriptor(
                hook=service.hook,
                title=service.title,
                description=service.description.format(**words),
                id=service.id,
                prefetch={key: templates[key] for key in service.prefetch_keys},
                usage_requirements=USAGE,
            )
            for service in SERVICES
        ]
    )

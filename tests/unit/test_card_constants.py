"""The process's shared card parts (``card_constants``) give every call the cards a builder of its own gives.

``CdsRuntime`` hands one ``CardConstants`` to every call's ``CardBuilder``; the golden files are built without
one. Here a panel's patients are carded both ways, one after the other through the same shared parts (so a
part memoised for one patient is reused for the next), in both card modes, with and without a public URL.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from rls_screen import synth
from rls_screen.assessment import assess
from rls_screen.cds.card_constants import CardConstants
from rls_screen.cds.card_links import CardLinks
from rls_screen.cds.cards import CardBuilder, CardMode
from rls_screen.cds.models import Link
from rls_screen.cds.services import PATIENT_VIEW_SERVICE
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.model import Assessment
from rls_screen.patient_data import from_bundle

pytestmark = pytest.mark.unit
AS_OF = date(2026, 11, 25)
HOOK_INSTANCE = "5d0c1f9e-8a7b-4c3d-9e2f-1a0b9c8d7e6f"
LINK_SETTINGS = [CardLinks(), CardLinks(public_url="https://cds.example.org", app_client_id="app")]


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture(scope="module")
def assessments(knowledge: Knowledge) -> list[Assessment]:
    panel = synth.generate_panel(40, seed=11, as_of=AS_OF, id_prefix="constants")
    found = [
        assess(from_bundle(synth.urn_uuid_bundle(record, bundle_type="collection")), knowledge=knowledge, as_of=AS_OF)
        for record in panel.patients
    ]
    assert sum(1 for a in found if a.findings) >= 10, "the panel should hold patients with findings"
    return found


def _cards(builder: CardBuilder, assessment: Assessment) -> list[dict[str, Any]]:
    return [d.card.model_dump(mode="json", by_alias=True, exclude_none=True) for d in builder.patient_view(assessment)]


@pytest.mark.parametrize("mode", ["one-card", "per-finding"])
@pytest.mark.parametrize("links", LINK_SETTINGS, ids=["no public URL", "public URL and app"])
def test_shared_parts_give_the_cards_of_a_builder_of_its_own(
    knowledge: Knowledge, assessments: list[Assessment], mode: CardMode, links: CardLinks
) -> None:
    shared = CardConstants(knowledge, links)
    for n, assessment in enumerate(assessments):
        subject = f"subject-{n}"
        own = CardBuilder(knowledge, PATIENT_VIEW_SERVICE, HOOK_INSTANCE, subject, links=links, mode=mode)
        reused = CardBuilder(knowledge, PATIENT_VIEW_SERVICE, HOOK_INSTANCE, subject, mode=mode, constants=shared)
        assert _cards(reused, assessment) == _cards(own, assessment)


def test_a_card_that_changes_its_lists_changes_no_other_card(
    knowledge: Knowledge, assessments: list[Assessment]
) -> None:
    shared = CardConstants(knowledge, LINK_SETTINGS[1])
    assessment = next(a for a in assessments if a.findings)
    builder = CardBuilder(knowledge, PATIENT_VIEW_SERVICE, HOOK_INSTANCE, "subject", constants=shared)
    before = _cards(builder, assessment)
    for draft in builder.patient_view(assessment):
        assert draft.card.links
        assert draft.card.override_reasons
        draft.card.links.append(Link(label="added", url="https://example.org", type="absolute"))
        draft.card.override_reasons.clear()
    assert _cards(builder, assessment) == before


def test_the_shared_parts_cannot_be_changed(knowledge: Knowledge, assessments: list[Assessment]) -> None:
    shared = CardConstants(knowledge, LINK_SETTINGS[1])
    assessment = next(a for a in assessments if a.findings)
    builder = CardBuilder(knowledge, PATIENT_VIEW_SERVICE, HOOK_INSTANCE, "subject", constants=shared)
    [draft] = builder.patient_view(assessment)
    card = draft.card
    assert card.source.topic
    assert card.links
    assert card.override_reasons
    for part, field in ((card.source, "label"), (card.source.topic, "display"), (card.links[0], "url")):
        with pytest.raises(ValidationError):
            setattr(part, field, "changed")
    with pytest.raises(ValidationError):
        card.override_reasons[0].code = "changed"

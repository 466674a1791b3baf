"""Which transitions of a service's conditions become Events (pure)."""

from __future__ import annotations

from bandsy_operator.reconcile.service import event_for


def cond(type_: str, status: str, reason: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason}


def test_a_new_service_posts_no_event_until_it_is_ready_or_in_trouble() -> None:
    # Its first status: progress, nothing stalled, nothing blocked.
    assert event_for(cond("Ready", "False", "Progressing"), appeared=True) is None
    assert event_for(cond("Stalled", "False", "Reconciled"), appeared=True) is None
    assert event_for(cond("PromotionBlocked", "False", "Promoted"), appeared=True) is None
    # Trouble from the start, and Ready reached, are news.
    assert event_for(cond("Ready", "False", "ImagePullBackOff"), appeared=True) == "Warning"
    assert event_for(cond("Stalled", "True", "UnknownDependency"), appeared=True) == "Warning"
    assert event_for(cond("Ready", "True", "Ready"), appeared=True) == "Normal"


def test_transitions_of_an_existing_condition_are_normal_when_good_or_progress() -> None:
    assert event_for(cond("Ready", "False", "Progressing"), appeared=False) == "Normal"
    assert event_for(cond("Ready", "True", "Ready"), appeared=False) == "Normal"
    # A promotion no longer blocked is good news, not a warning.
    assert event_for(cond("PromotionBlocked", "False", "Promoted"), appeared=False) == "Normal"
    assert event_for(cond("PromotionBlocked", "True", "SoakTime"), appeared=False) == "Warning"
    assert event_for(cond("BackupReady", "True", "Verified"), appeared=False) == "Normal"
    assert event_for(cond("BackupReady", "False", "Failed"), appeared=False) == "Warning"
    # Stalled going away is told by the Ready that follows.
    assert event_for(cond("Stalled", "False", "Reconciled"), appeared=False) is None

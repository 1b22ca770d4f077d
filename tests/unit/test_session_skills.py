"""gateway.state.session_skills: bounded, expiring, and one consumer never sees another's."""

from __future__ import annotations

from gateway.state.session_skills import SessionSkill, SessionSkills


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_records_the_latest_binding_of_a_session() -> None:
    clock = Clock()
    skills = SessionSkills(clock=clock)
    skills.record("alice", "s1", "code-review@1", "skill_tool_call")
    assert skills.lookup("alice", "s1") == SessionSkill("code-review@1", "skill_tool_call", 1000.0)
    clock.now += 5
    skills.record("alice", "s1", "pdf-processing@2", "header")
    assert skills.lookup("alice", "s1") == SessionSkill("pdf-processing@2", "header", 1005.0)
    assert skills.lookup("alice", "s2") is None
    assert len(skills) == 1


def test_consumers_are_isolated() -> None:
    skills = SessionSkills()
    skills.record("alice", "shared-id", "code-review@1", "skill_tool_call")
    assert skills.lookup("bob", "shared-id") is None
    skills.record("bob", "shared-id", "pdf-processing@1", "header")
    found = skills.lookup("alice", "shared-id")
    assert found is not None and found.ref == "code-review@1"
    skills.forget("bob", "shared-id")
    assert skills.lookup("bob", "shared-id") is None
    assert skills.lookup("alice", "shared-id") is not None


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    skills = SessionSkills(ttl_s=60.0, clock=clock)
    skills.record("alice", "s1", "code-review@1", "header")
    clock.now += 59.9
    assert skills.lookup("alice", "s1") is not None
    clock.now += 0.1
    assert skills.lookup("alice", "s1") is None
    assert len(skills) == 0  # an expired entry is dropped when seen


def test_recording_again_renews_the_ttl() -> None:
    clock = Clock()
    skills = SessionSkills(ttl_s=60.0, clock=clock)
    skills.record("alice", "s1", "code-review@1", "header")
    clock.now += 50
    skills.record("alice", "s1", "code-review@1", "header")
    clock.now += 50
    assert skills.lookup("alice", "s1") is not None


def test_bounded_least_recently_recorded_leaves_first() -> None:
    skills = SessionSkills(max_entries=3)
    for session in ("a", "b", "c"):
        skills.record("alice", session, "code-review@1", "header")
    skills.record("alice", "a", "pdf-processing@1", "header")  # a is now the most recent
    skills.record("alice", "d", "code-review@1", "header")  # evicts b
    assert len(skills) == 3
    assert skills.lookup("alice", "b") is None
    assert [s for s in ("a", "c", "d") if skills.lookup("alice", s) is not None] == ["a", "c", "d"]


def test_forget_of_an_unknown_session_is_harmless() -> None:
    skills = SessionSkills()
    skills.forget("alice", "never-seen")
    assert len(skills) == 0

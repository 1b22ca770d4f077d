"""Publish side: SKILL.md folder -> validated, digested, stored SkillVersion."""

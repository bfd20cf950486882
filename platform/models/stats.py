"""Statistics (``stats/``) has no tables of its own: the index of the records tables it needs,
declared next to the feature that needs it (as ``models/signing.py`` does for the search)."""

from __future__ import annotations

from sqlalchemy import Index

from kyso.platform.models.records import Person

# The invalid-people list (stats) pages people of one verification group by id: an index on
# (status, id) gives PostgreSQL an ordered scan per status instead of sorting the whole group.
Index("ix_people_status_id", Person.verification_status, Person.id)

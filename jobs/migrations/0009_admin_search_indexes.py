"""Case-insensitive prefix search in the staff console: UPPER(code) and UPPER(company name).

``code__istartswith`` is ``UPPER(code::text) LIKE UPPER('abc%')`` on PostgreSQL; an index on
that expression with ``text_pattern_ops`` serves it (and ``iexact``) whatever the collation.
PostgreSQL only (built CONCURRENTLY: no write lock on a big jobs table); other databases
search without it.
"""

from django.db import migrations

INDEXES = {
    "job_code_upper_pattern": "jobs_job (UPPER(code) text_pattern_ops)",
    "company_name_upper_pattern": "jobs_company (UPPER(name) text_pattern_ops)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, target in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY

    dependencies = [
        ("jobs", "0008_member_token_version"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]

"""Alembic environment: newsletter.storage.db passes the connection in, so migrations
run inside the CLI's own process and transaction."""

from alembic import context

from newsletter.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
)
with context.begin_transaction():
    context.run_migrations()

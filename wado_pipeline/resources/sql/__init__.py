"""What the SQL backends share: the base resource, tables and DDL, upserts and read queries."""

-- docker-compose: a database for Dagster's own storage beside the pipeline's tables.
CREATE DATABASE wado_dagster OWNER wado;

# The pipeline image for docker-compose.yml: the package plus Dagster's webserver and daemon.
FROM python:3.11-slim
WORKDIR /opt/wado-pipeline
COPY pyproject.toml README.md dagster.yaml workspace.yaml ./
COPY wado_pipeline ./wado_pipeline
RUN pip install --no-cache-dir . && mkdir -p /opt/dagster_home && cp dagster.yaml /opt/dagster_home/
ENV DAGSTER_HOME=/opt/dagster_home
EXPOSE 3000
# Dagster's storage and the index tables first, as their owner (the database user of
# DAGSTER_POSTGRES_URL and WADO_POSTGRES_URL); doris-init made the Doris tables.
CMD ["sh", "-c", "wado-pipeline init-db --only dagster postgres && exec dagster dev -w workspace.yaml -h 0.0.0.0 -p 3000"]

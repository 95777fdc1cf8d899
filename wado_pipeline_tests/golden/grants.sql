-- wado-pipeline least-privilege grants for postgres
-- The tables' owner creates the tables first: wado-pipeline init-db
-- runs: read and upsert the pipeline's tables in schema public, nothing else
GRANT CONNECT ON DATABASE "wado" TO "wado_pipeline";
GRANT USAGE ON SCHEMA "public" TO "wado_pipeline";
GRANT SELECT, INSERT, UPDATE ON TABLE "public"."dicom_object_meta", "public"."dicom_state_meta", "public"."dicom_image_meta", "public"."dicom_ingest_error" TO "wado_pipeline";
-- a data team: read the metadata tables
GRANT CONNECT ON DATABASE "wado" TO "wado_reader";
GRANT USAGE ON SCHEMA "public" TO "wado_reader";
GRANT SELECT ON TABLE "public"."dicom_object_meta", "public"."dicom_state_meta", "public"."dicom_image_meta" TO "wado_reader";

-- wado-pipeline least-privilege grants for mariadb
-- The tables' owner creates the tables first: wado-pipeline init-db
-- runs: read and upsert the pipeline's tables, nothing else
GRANT SELECT, INSERT, UPDATE ON `wado`.`dicom_object_meta` TO 'wado_pipeline'@'%';
GRANT SELECT, INSERT, UPDATE ON `wado`.`dicom_state_meta` TO 'wado_pipeline'@'%';
GRANT SELECT, INSERT, UPDATE ON `wado`.`dicom_image_meta` TO 'wado_pipeline'@'%';
-- a data team: read the metadata tables
GRANT SELECT ON `wado`.`dicom_object_meta` TO 'wado_reader'@'%';
GRANT SELECT ON `wado`.`dicom_state_meta` TO 'wado_reader'@'%';
GRANT SELECT ON `wado`.`dicom_image_meta` TO 'wado_reader'@'%';

-- wado-pipeline least-privilege grants for doris
-- The tables' owner creates the tables first: wado-pipeline init-db
-- runs: read and load the pipeline's tables (INSERT and Stream Load), nothing else
GRANT SELECT_PRIV, LOAD_PRIV ON wado.dicom_object_meta TO 'wado_pipeline'@'%';
GRANT SELECT_PRIV, LOAD_PRIV ON wado.dicom_state_meta TO 'wado_pipeline'@'%';
GRANT SELECT_PRIV, LOAD_PRIV ON wado.dicom_image_meta TO 'wado_pipeline'@'%';
-- a data team: read the metadata tables
GRANT SELECT_PRIV ON wado.dicom_object_meta TO 'wado_reader'@'%';
GRANT SELECT_PRIV ON wado.dicom_state_meta TO 'wado_reader'@'%';
GRANT SELECT_PRIV ON wado.dicom_image_meta TO 'wado_reader'@'%';

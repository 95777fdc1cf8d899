CREATE TABLE IF NOT EXISTS `dicom_object_meta` (
  `trace_id` VARCHAR(36) NOT NULL,
  `worker_node_id` VARCHAR(64) NOT NULL,
  `tenant_id` VARCHAR(64) NOT NULL,
  `patient_id` VARCHAR(64) NOT NULL,
  `study_uid` VARCHAR(64) NOT NULL,
  `series_uid` VARCHAR(64) NOT NULL,
  `sop_uid` VARCHAR(64) NOT NULL,
  `file_size` BIGINT NULL,
  `file_path` VARCHAR(512) NULL,
  `transfer_syntax_uid` VARCHAR(64) NULL,
  `number_of_frames` INT NULL,
  `created_time` DATETIME(6) NOT NULL,
  `series_uid_hash` VARCHAR(20) NULL,
  `study_uid_hash` VARCHAR(20) NULL,
  `accession_number` VARCHAR(64) NULL,
  `target_ts` VARCHAR(64) NULL,
  `study_date` DATE NULL,
  `transfer_status` VARCHAR(16) NULL,
  `source_ip` VARCHAR(24) NULL,
  `source_ae` VARCHAR(64) NULL
) ENGINE=OLAP
UNIQUE KEY(`trace_id`)
DISTRIBUTED BY HASH(`trace_id`) BUCKETS 8
PROPERTIES (
  "replication_num" = "1",
  "enable_unique_key_merge_on_write" = "true"
);

CREATE TABLE IF NOT EXISTS `dicom_state_meta` (
  `tenant_id` VARCHAR(64) NOT NULL,
  `patient_id` VARCHAR(64) NOT NULL,
  `study_uid` VARCHAR(64) NOT NULL,
  `series_uid` VARCHAR(64) NOT NULL,
  `study_uid_hash` VARCHAR(20) NOT NULL,
  `series_uid_hash` VARCHAR(20) NOT NULL,
  `study_date_origin` VARCHAR(8) NOT NULL,
  `patient_name` VARCHAR(64) NULL,
  `patient_sex` VARCHAR(1) NULL,
  `patient_birth_date` DATE NULL,
  `patient_birth_time` VARCHAR(16) NULL,
  `patient_age` VARCHAR(16) NULL,
  `patient_size` DOUBLE NULL,
  `patient_weight` DOUBLE NULL,
  `pregnancy_status` INT NULL,
  `study_date` DATE NOT NULL,
  `study_time` VARCHAR(16) NULL,
  `accession_number` VARCHAR(16) NULL,
  `study_id` VARCHAR(16) NULL,
  `study_description` VARCHAR(64) NULL,
  `modality` VARCHAR(16) NULL,
  `series_number` INT NULL,
  `series_date` DATE NULL,
  `series_time` VARCHAR(16) NULL,
  `series_description` VARCHAR(256) NULL,
  `body_part_examined` VARCHAR(64) NULL,
  `protocol_name` VARCHAR(64) NULL,
  `series_related_instances` INT NULL,
  `created_time` DATETIME(6) NOT NULL,
  `updated_time` DATETIME(6) NOT NULL
) ENGINE=OLAP
UNIQUE KEY(`tenant_id`, `patient_id`, `study_uid`, `series_uid`)
DISTRIBUTED BY HASH(`study_uid`) BUCKETS 8
PROPERTIES (
  "replication_num" = "1",
  "enable_unique_key_merge_on_write" = "true",
  "function_column.sequence_col" = "updated_time"
);

CREATE TABLE IF NOT EXISTS `dicom_image_meta` (
  `tenant_id` VARCHAR(64) NOT NULL,
  `patient_id` VARCHAR(64) NOT NULL,
  `study_uid` VARCHAR(64) NOT NULL,
  `series_uid` VARCHAR(64) NOT NULL,
  `sop_uid` VARCHAR(64) NOT NULL,
  `study_uid_hash` VARCHAR(20) NOT NULL,
  `series_uid_hash` VARCHAR(20) NOT NULL,
  `study_date_origin` VARCHAR(8) NOT NULL,
  `content_date` DATE NULL,
  `content_time` VARCHAR(16) NULL,
  `instance_number` INT NULL,
  `image_type` VARCHAR(128) NULL,
  `image_orientation_patient` VARCHAR(128) NULL,
  `image_position_patient` VARCHAR(64) NULL,
  `slice_thickness` DOUBLE NULL,
  `spacing_between_slices` DOUBLE NULL,
  `slice_location` DOUBLE NULL,
  `samples_per_pixel` INT NULL,
  `photometric_interpretation` VARCHAR(32) NULL,
  `width` INT NULL,
  `columns` INT NULL,
  `bits_allocated` INT NULL,
  `bits_stored` INT NULL,
  `high_bit` INT NULL,
  `pixel_representation` INT NULL,
  `rescale_intercept` DOUBLE NULL,
  `rescale_slope` DOUBLE NULL,
  `rescale_type` VARCHAR(64) NULL,
  `window_center` VARCHAR(64) NULL,
  `window_width` VARCHAR(64) NULL,
  `transfer_syntax_uid` VARCHAR(64) NOT NULL,
  `pixel_data_location` VARCHAR(512) NULL,
  `thumbnail_location` VARCHAR(512) NULL,
  `sop_class_uid` VARCHAR(64) NOT NULL,
  `image_status` VARCHAR(32) NULL,
  `space_size` BIGINT NULL,
  `created_time` DATETIME(6) NOT NULL,
  `updated_time` DATETIME(6) NOT NULL
) ENGINE=OLAP
UNIQUE KEY(`tenant_id`, `patient_id`, `study_uid`, `series_uid`, `sop_uid`)
DISTRIBUTED BY HASH(`study_uid`) BUCKETS 8
PROPERTIES (
  "replication_num" = "1",
  "enable_unique_key_merge_on_write" = "true",
  "function_column.sequence_col" = "updated_time"
);

-- Routine Load jobs for WADO_DORIS_LOAD=routine_load: Doris loads itself from
-- the topics; the pipeline's runs write nothing into these tables.
CREATE ROUTINE LOAD `wado`.`wado_dicom_object_meta_load` ON `dicom_object_meta`
COLUMNS (
    `trace_id`,
    `worker_node_id`,
    `tenant_id`,
    `patient_id`,
    `study_uid`,
    `series_uid`,
    `sop_uid`,
    `file_size`,
    `file_path`,
    `transfer_syntax_uid`,
    `number_of_frames`,
    `created_time`,
    `series_uid_hash`,
    `study_uid_hash`,
    `accession_number`,
    `target_ts`,
    `study_date`,
    `transfer_status`,
    `source_ip`,
    `source_ae`
)
PROPERTIES (
    "format" = "json",
    "strict_mode" = "false",
    "max_batch_interval" = "5",
    "max_error_number" = "1000"
)
FROM KAFKA (
    "kafka_broker_list" = "127.0.0.1:19092",
    "kafka_topic" = "log_queue",
    "property.group.id" = "doris_dicom_object_meta_load",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);

CREATE ROUTINE LOAD `wado`.`wado_dicom_state_meta_load` ON `dicom_state_meta`
COLUMNS (
    `tenant_id`,
    `patient_id`,
    `study_uid`,
    `series_uid`,
    `study_uid_hash`,
    `series_uid_hash`,
    `study_date_origin`,
    `patient_name`,
    `patient_sex`,
    `patient_birth_date`,
    `patient_birth_time`,
    `patient_age`,
    `patient_size`,
    `patient_weight`,
    `pregnancy_status`,
    `study_date`,
    `study_time`,
    `accession_number`,
    `study_id`,
    `study_description`,
    `modality`,
    `series_number`,
    `series_date`,
    `series_time`,
    `series_description`,
    `body_part_examined`,
    `protocol_name`,
    `series_related_instances`,
    `created_time`,
    `updated_time`
)
PROPERTIES (
    "format" = "json",
    "strict_mode" = "false",
    "max_batch_interval" = "5",
    "max_error_number" = "1000"
)
FROM KAFKA (
    "kafka_broker_list" = "127.0.0.1:19092",
    "kafka_topic" = "dicom_state_queue",
    "property.group.id" = "doris_dicom_state_meta_load",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);

CREATE ROUTINE LOAD `wado`.`wado_dicom_image_meta_load` ON `dicom_image_meta`
COLUMNS (
    `tenant_id`,
    `patient_id`,
    `study_uid`,
    `series_uid`,
    `sop_uid`,
    `study_uid_hash`,
    `series_uid_hash`,
    `study_date_origin`,
    `content_date`,
    `content_time`,
    `instance_number`,
    `image_type`,
    `image_orientation_patient`,
    `image_position_patient`,
    `slice_thickness`,
    `spacing_between_slices`,
    `slice_location`,
    `samples_per_pixel`,
    `photometric_interpretation`,
    `width`,
    `columns`,
    `bits_allocated`,
    `bits_stored`,
    `high_bit`,
    `pixel_representation`,
    `rescale_intercept`,
    `rescale_slope`,
    `rescale_type`,
    `window_center`,
    `window_width`,
    `transfer_syntax_uid`,
    `pixel_data_location`,
    `thumbnail_location`,
    `sop_class_uid`,
    `image_status`,
    `space_size`,
    `created_time`,
    `updated_time`
)
PROPERTIES (
    "format" = "json",
    "strict_mode" = "false",
    "max_batch_interval" = "5",
    "max_error_number" = "1000"
)
FROM KAFKA (
    "kafka_broker_list" = "127.0.0.1:19092",
    "kafka_topic" = "dicom_image_queue",
    "property.group.id" = "doris_dicom_image_meta_load",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);

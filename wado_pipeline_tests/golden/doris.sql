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

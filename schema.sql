-- Tracking tables for archive.py (archive.py also creates any that are missing).
-- Kept identical to archive.TRACKING_DDL; tests/test_docs.py checks it.
-- Load with: mariadb app < schema.sql

CREATE TABLE IF NOT EXISTS `process_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `source_table` VARCHAR(64) NOT NULL,
  `archive_table` VARCHAR(64) NOT NULL,
  `status` ENUM('RUNNING','COMPLETED','FAILED','INTERRUPTED') NOT NULL,
  `host` VARCHAR(255) NOT NULL,
  `pid` INT NOT NULL,
  `start_time` DATETIME NOT NULL,
  `end_time` DATETIME NULL,
  `total_files` INT NOT NULL DEFAULT 0,
  `processed_files` INT NOT NULL DEFAULT 0,
  `current_file` VARCHAR(255) NULL,
  `current_batch` INT NULL,
  `rows_archived` BIGINT NOT NULL DEFAULT 0,
  `rows_deleted` BIGINT NOT NULL DEFAULT 0,
  `duplicates` BIGINT NOT NULL DEFAULT 0,
  `conflicts` BIGINT NOT NULL DEFAULT 0,
  `skipped_by_guard` BIGINT NOT NULL DEFAULT 0,
  `stop_reason` VARCHAR(255) NULL,
  `pause_reason` VARCHAR(255) NULL,
  `paused_seconds` DOUBLE NOT NULL DEFAULT 0,
  `error_message` TEXT NULL,
  KEY `ix_process_status` (`source_table`, `status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `file_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `file_size` BIGINT NOT NULL,
  `file_checksum` CHAR(64) NOT NULL,
  `status` ENUM('PROCESSING','COMPLETED','FAILED','INTERRUPTED') NOT NULL,
  `batch_size` INT NOT NULL,
  `total_keys` BIGINT NOT NULL DEFAULT 0,
  `total_batches` INT NOT NULL DEFAULT 0,
  `start_batch` INT NOT NULL DEFAULT 1,
  `processed_batches` INT NOT NULL DEFAULT 0,
  `last_processed_batch` INT NOT NULL DEFAULT 0,
  `rows_archived` BIGINT NOT NULL DEFAULT 0,
  `rows_deleted` BIGINT NOT NULL DEFAULT 0,
  `duplicates` BIGINT NOT NULL DEFAULT 0,
  `conflicts` BIGINT NOT NULL DEFAULT 0,
  `skipped_by_guard` BIGINT NOT NULL DEFAULT 0,
  `error_message` TEXT NULL,
  `started_at` DATETIME NOT NULL,
  `finished_at` DATETIME NULL,
  UNIQUE KEY `ux_file_run` (`process_log_id`, `file_name`),
  KEY `ix_file_checksum` (`file_name`, `file_checksum`, `status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `batch_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `batch_number` INT NOT NULL,
  `status` ENUM('COMPLETED','COMPLETED_WITH_DUPLICATES','FAILED') NOT NULL,
  `first_key` VARCHAR(255) NULL,
  `last_key` VARCHAR(255) NULL,
  `keys_in_batch` INT NOT NULL DEFAULT 0,
  `rows_archived` INT NOT NULL DEFAULT 0,
  `rows_deleted` INT NOT NULL DEFAULT 0,
  `duplicates` INT NOT NULL DEFAULT 0,
  `conflicts` INT NOT NULL DEFAULT 0,
  `skipped_by_guard` INT NOT NULL DEFAULT 0,
  `conflict_keys` MEDIUMTEXT NULL,
  `end_offset` BIGINT NULL,
  `end_line` BIGINT NULL,
  `error_message` TEXT NULL,
  `created_at` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY `ux_batch_run` (`process_log_id`, `file_name`, `batch_number`),
  KEY `ix_batch_status` (`status`, `created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

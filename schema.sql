-- Tracking tables for archive.py, schema version 3 (archive.py also creates any that are missing,
-- and upgrades tables made by older versions on its first run: see README, Upgrading).
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
  `job` VARCHAR(300) NOT NULL DEFAULT '',
  `version` VARCHAR(32) NULL,
  `last_seen` DATETIME NULL,
  `not_found` BIGINT NOT NULL DEFAULT 0,
  `destination` VARCHAR(255) NULL,
  KEY `ix_process_status` (`source_table`, `status`),
  KEY `ix_process_job` (`job`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='archive.py tracking schema 3';

CREATE TABLE IF NOT EXISTS `file_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `file_size` BIGINT NOT NULL,
  `file_checksum` CHAR(64) NOT NULL,
  `status` ENUM('PROCESSING','COMPLETED','FAILED','INTERRUPTED','CONFLICTS','CHANGED') NOT NULL,
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
  `job` VARCHAR(300) NOT NULL DEFAULT '',
  `not_found` BIGINT NOT NULL DEFAULT 0,
  `reading` VARCHAR(255) NOT NULL DEFAULT '',
  UNIQUE KEY `ux_file_run` (`process_log_id`, `file_name`),
  KEY `ix_file_checksum` (`file_name`, `file_checksum`, `status`),
  KEY `ix_file_job` (`job`, `file_name`, `file_checksum`)
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
  `not_found` INT NOT NULL DEFAULT 0,
  UNIQUE KEY `ux_batch_run` (`process_log_id`, `file_name`, `batch_number`),
  KEY `ix_batch_status` (`status`, `created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `conflict_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `job` VARCHAR(300) NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `file_checksum` CHAR(64) NOT NULL,
  `key_value` TEXT NOT NULL,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `batch_number` INT NOT NULL,
  `status` ENUM('OPEN','RESOLVED') NOT NULL DEFAULT 'OPEN',
  `resolution` VARCHAR(255) NULL,
  `resolved_by` BIGINT UNSIGNED NULL,
  `found_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `resolved_at` DATETIME NULL,
  KEY `ix_conflict_open` (`job`, `status`, `file_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `run_locks` (
  `lock_name` VARCHAR(191) NOT NULL PRIMARY KEY,
  `owner` CHAR(32) NOT NULL,
  `process_log_id` BIGINT UNSIGNED NULL,
  `host` VARCHAR(255) NOT NULL,
  `pid` INT NOT NULL,
  `node` VARCHAR(255) NOT NULL,
  `connection_id` BIGINT UNSIGNED NOT NULL,
  `acquired_at` DATETIME(6) NOT NULL,
  `heartbeat_at` DATETIME(6) NOT NULL,
  `expires_at` DATETIME(6) NOT NULL,
  `user_lock` VARCHAR(64) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

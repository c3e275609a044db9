"""The database schema: a file made by an older CloudMover gains the columns added since."""
from __future__ import annotations

import sqlite3
import subprocess
import sys


def test_a_database_missing_a_newer_column_gets_it_with_its_default(tmp_path):
    path = tmp_path / "cloudmover.db"
    connect = f"from headnode import models; models.connect({str(path)!r})"
    subprocess.run([sys.executable, "-c", connect], check=True)
    with sqlite3.connect(path) as old:   # as a database from before the column existed
        old.execute("ALTER TABLE job DROP COLUMN largest_object")
        old.execute("INSERT INTO job (name, state, source_url, destination_url, source, destination, options,"
                    " region, created_at, planning_done, task_seq, open_tasks, objects_total, bytes_total,"
                    " objects_done, objects_skipped, bytes_done, objects_failed, objects_deleted,"
                    " delete_failures, retries, codec_objects, codec_bytes_read, codec_bytes_written)"
                    " VALUES ('old', 'complete', 's3://a/', 's3://b/', '{}', '{}', '{}', 'us-east-1',"
                    " '2026-01-01 00:00:00', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)")
    read = subprocess.run([sys.executable, "-c", connect + "; print(models.Job.get().largest_object)"],
                          check=True, capture_output=True, text=True)
    assert read.stdout.strip() == "0"
    with sqlite3.connect(path) as new:
        assert "largest_object" in {row[1] for row in new.execute("PRAGMA table_info(job)")}

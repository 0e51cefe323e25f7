"""Where an Optuna study lives: the sweep's SQLite file in the run folder, or a database that several workers share
(sweep.storage). Light on imports: the sweep command checks a shared database before it loads any data."""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from distill_lora.config import SweepConfig, storage_without_password
from distill_lora.errors import UserError


def open_storage(url: str, s: SweepConfig) -> optuna.storages.RDBStorage:
    """Optuna's database storage with heartbeats (a running trial whose worker stops beating is failed after
    s.grace_period and retried, up to s.retries times); a URL that cannot be used is one line."""
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    shown = storage_without_password(url)
    # a database that cannot be reached answers within seconds; SQLite waits for a writer of another worker
    connect = {"timeout": 60} if url.startswith("sqlite") else {"connect_timeout": 5}
    try:
        for attempt in range(3):
            try:
                with (
                    warnings.catch_warnings()
                ):  # heartbeats are "experimental" to optuna; we rely on them and test them
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url,
                        engine_kwargs={"connect_args": connect},
                        heartbeat_interval=s.heartbeat_interval,
                        grace_period=s.grace_period,
                        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=s.retries),
                    )
            except IntegrityError:  # workers starting together on a new database both created its tables
                if attempt == 2:
                    raise
                time.sleep(1)
    except ImportError as e:  # optuna's own ImportError does not name the module; its cause does
        driver = getattr(e, "name", None) or getattr(e.__cause__, "name", None) or url.split("://")[0]
        raise UserError(
            f"sweep.storage {shown}: its database driver {driver} is not installed; for PostgreSQL: pip install "
            "'distill-lora[postgres]' (psycopg 3)"
        ) from None
    except (SQLAlchemyError, OSError, ValueError) as e:
        why = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:300]
        raise UserError(
            f"sweep.storage {shown}: cannot open the database ({why}); check the URL, that the server runs and "
            "that this machine may connect (the password: in the URL, or PGPASSWORD / ~/.pgpass)"
        ) from None

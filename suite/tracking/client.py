"""How the suite talks to MLflow: the client's defaults, filter clauses, and experiments marked as training ones.

`configure()` is called by the entry points that talk to MLflow (the CLI, the tracker, the results API), never at
import time. It sets, only where the user has not:
    MLFLOW_DISABLE_TELEMETRY=true          no network at run time (MLflow otherwise phones home on first use)
    MLFLOW_HTTP_REQUEST_MAX_RETRIES=2      a server that is down costs seconds, not MLflow's four minutes of retries
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1
    MLFLOW_HTTP_REQUEST_TIMEOUT=10         a server that accepts and never answers holds each request 10 s, not 120
    MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true
                                           MLflow's own "View run at" link lacks the UI's workflowType, so it opens
                                           in the GenAI layout; the suite prints its own (suite.tracking.views)
A run that loses its server goes on offline (suite.tracking.spool).

A client of a local SQLite store creates (and migrates) the store's schema when it is made; two processes doing
that at once on a new file race (alembic: "index ... already exists"), so clients of one SQLite file on a host are
made one at a time, under a lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

CLIENT_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# Marks the experiment as one of training runs (MLflow's own clients read it; the UI's layout follows the URL's
# workflowType, which every URL the suite writes sets: suite.tracking.views).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"


def configure() -> None:
    """Apply CLIENT_DEFAULTS where the user has not set the variable (their own values win)."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient for `tracking_uri` (default: MLFLOW_TRACKING_URI, else MLflow's default), configured first."""
    configure()
    import mlflow

    with _schema_lock(tracking_uri or mlflow.get_tracking_uri()):
        return mlflow.MlflowClient(tracking_uri)


def _schema_lock(uri: str) -> contextlib.AbstractContextManager[None]:
    """Held while a client of a SQLite file is made (it may create the schema); nothing for other stores."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from suite.tracking.locks import named_lock

    return named_lock("sqlite-schema", str(Path(uri.removeprefix("sqlite:///")).expanduser().resolve()))


def tag_clause(name: str, value: str) -> str:
    """One `tags.name = value` clause of an MLflow filter string, quoted so that MLflow matches it exactly.

    MLflow's filter grammar has no escape character (a backslash is taken literally): a value holding a single
    quote is matched only inside double quotes, and one holding both kinds of quote cannot be written at all.
    """
    text = str(value)
    if "'" not in text:
        return f"tags.`{name}` = '{text}'"
    if '"' not in text:
        return f'tags.`{name}` = "{text}"'
    from suite.errors import DataError

    raise DataError(f"cannot search MLflow for tag {name} = {text!r}: it holds both kinds of quote")


def tags_filter(tags: dict[str, str], *extra: str) -> str:
    """`tag = value AND ...` for every item (values quoted by `tag_clause`), then any extra clauses."""
    return " AND ".join([*(tag_clause(k, v) for k, v in tags.items()), *extra])


def ensure_experiment(name: str, mlflow_client: Any | None = None) -> str:
    """The id of experiment `name`, created if missing, marked as a training experiment and holding the saved
    view of every benchmark row (`suite.tracking.views.EVERY_RUN`)."""
    from mlflow.exceptions import MlflowException

    from suite.tracking.views import EVERY_RUN

    mlflow_client = mlflow_client or client()
    view_key, view_value = EVERY_RUN.tag()
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        try:
            return mlflow_client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT_KIND,
                                                               view_key: view_value})
        except MlflowException:  # created meanwhile by a concurrent run
            found = mlflow_client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in ((EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND), (view_key, view_value)):
        if key not in found.tags:
            add_experiment_tag(mlflow_client, found.experiment_id, key, value)
    return found.experiment_id


def add_experiment_tag(mlflow_client: Any, experiment_id: str, key: str, value: str) -> None:
    """Add an experiment tag that concurrent runs may be adding at the same moment; a key that one of them added
    first counts as added (the suite's experiment tags are the same for every run, or keyed by their content as
    the saved views are, whose value differs only in its creation time).

    MLflow's SQL store looks the tag up, then inserts it: two runs starting together on one server (a matrix, a
    job array) both miss it, and the later insert fails on the unique key (5 refused inserts in 5 rounds of 8 threads
    saving 6 views).
    """
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        if key not in mlflow_client.get_experiment(experiment_id).tags:
            raise

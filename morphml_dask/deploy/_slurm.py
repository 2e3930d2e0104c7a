"""Searches on SLURM: `slurm_cluster`, a dask-jobqueue `SLURMCluster` with GPUs and worker
lifetimes wired consistently.

Each SLURM job runs one Dask worker. With ``gpus_per_worker=n`` the job asks SLURM for ``n``
GPUs (``#SBATCH --gres=gpu:n``) and its worker offers Dask ``n`` abstract ``GPU`` resources
(``--resources GPU=n``), the resources trials ask for (``Search(gpus_per_trial=...)``), so the
two counts cannot disagree. Workers retire (``--lifetime``, staggered) before SLURM ends
their jobs at the walltime: they leave the scheduler cleanly, one at a time, and their
trials run again on other workers. Every keyword left at None falls back to dask-jobqueue's
configuration (``jobqueue.slurm.*``, e.g. ``~/.config/dask/jobqueue.yaml``), so a site's
jobqueue.yaml keeps working.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import dask.config
from dask.utils import parse_bytes, parse_timedelta

from morphml_dask.dashboard import serve_page
from morphml_dask.deploy._docs import with_parameters
from morphml_dask.exceptions import ClusterError

if TYPE_CHECKING:
    from dask_jobqueue.slurm import SLURMCluster

__all__ = ["slurm_cluster", "worker_job_id"]

# A worker retires a twelfth of the walltime (at most 10 minutes) before its job ends, give
# or take a stagger of four fifths of that margin: for one hour, lifetime 55m and stagger
# 4m, as dask-jobqueue's documentation advises.
_MARGIN_FRACTION = 1 / 12
_MARGIN_MAX_S = 600.0
_STAGGER_FRACTION = 0.8
# Directives that ask SLURM for GPUs, in any of its spellings.
_GPU_DIRECTIVE = re.compile(r"^\s*(--gres[= ]|--gpus(-per-\w+)?[= ]|-G\s*\d)")
_GPU_COUNT = re.compile(r"^\s*(--gpus(-per-(node|task))?[= ]|-G\s*)(\w+:)?(?P<count>\d+)\s*$")
_GRES = re.compile(r"^\w+(:\w+)?$")
_WALLTIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<clock>\d+(?::\d+){0,2})$")


_PARAMETERS = """
gpus_per_worker
    GPUs each job asks SLURM for and its worker offers Dask as ``GPU`` resources, a whole
    number (for trials that share a GPU, ``ceil(gpus_per_trial)``); 0 adds nothing (the
    site's configuration may still ask for GPUs). The worker runs a trial per core of the
    job: give it at least as many cores as trials share its GPUs.
cores, memory
    Per job (``jobqueue.slurm.cores`` / ``memory``), e.g. ``cores=8, memory="64GB"``.
walltime
    Per job, as SLURM writes it: ``"HH:MM:SS"``, ``"D-HH:MM"``, ...
    (``jobqueue.slurm.walltime``).
queue
    The partition (``#SBATCH -p``; ``jobqueue.slurm.queue``).
gres
    The GRES name, with an optional type, that GPUs are asked for under:
    ``--gres=<gres>:<gpus_per_worker>`` (default ``"gpu"``; e.g. ``"gpu:a100"``).
lifetime, lifetime_stagger
    When workers retire (``dask worker --lifetime``), give or take the stagger, as a
    Dask time (``"55m"``) or seconds. By default derived from the walltime: a twelfth of
    it, at most 10 minutes, before the job's end, staggered by four fifths of that.
interface
    The network interface of the workers and the scheduler, e.g. ``"ib0"``
    (``jobqueue.slurm.interface``).
**kwargs
    Passed to `SLURMCluster` (``account``, ``job_extra_directives``,
    ``worker_extra_args``, ``scheduler_options``, ``log_directory``, ...);
    ``dashboard_address`` goes into ``scheduler_options``.
"""


@with_parameters(_PARAMETERS)
def slurm_cluster(
    *,
    gpus_per_worker: int = 0,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    queue: str | None = None,
    gres: str | None = None,
    lifetime: str | float | None = None,
    lifetime_stagger: str | float | None = None,
    interface: str | None = None,
    **kwargs: Any,
) -> SLURMCluster:
    """A `dask_jobqueue.SLURMCluster` whose jobs each run one worker with ``gpus_per_worker``
    GPUs, retiring before the walltime.

    Its scheduler runs in this process and serves the morphml dashboard page unless
    ``morphml.dashboard`` is off (`morphml_dask.dashboard.serve_page`).

    Parameters
    ----------
    {parameters}

    Raises
    ------
    ClusterError
        When dask-jobqueue is missing, or the arguments contradict each other or SLURM.

    Examples
    --------
    >>> cluster = slurm_cluster(gpus_per_worker=1, cores=8, memory="64GB",
    ...                         walltime="01:00:00")  # doctest: +SKIP
    >>> cluster.adapt(minimum_jobs=1, maximum_jobs=16)  # doctest: +SKIP
    """
    cluster_class = _slurm_cluster_class()
    config = f"jobqueue.{kwargs.get('config_name') or 'slurm'}."
    _check_size(cores, memory, config)
    _move_dashboard_address(kwargs)
    directives, args = _directives_and_worker_args(kwargs, config, gpus_per_worker, gres)
    wall = walltime if walltime is not None else dask.config.get(config + "walltime", None)
    args = _with_lifetime(args, _walltime_seconds(wall), lifetime, lifetime_stagger)
    options = {
        "cores": cores,
        "memory": memory,
        "walltime": walltime,
        "queue": queue,
        "interface": interface,
        **kwargs,
        "job_extra_directives": directives,
        "worker_extra_args": args,
    }
    # None means "as configured": dask-jobqueue reads jobqueue.slurm.* itself.
    given = {key: value for key, value in options.items() if value is not None}
    with serve_page():  # the scheduler runs here, in the driver's process
        return cluster_class(**given)


def worker_job_id() -> str | None:
    """The SLURM job this process runs in (``SLURM_JOB_ID``), or None outside SLURM.

    On a worker: ``client.run(worker_job_id)`` maps worker addresses to job ids.
    """
    return os.environ.get("SLURM_JOB_ID")


def _slurm_cluster_class() -> type[SLURMCluster]:
    try:
        from dask_jobqueue.slurm import SLURMCluster
    except ImportError as error:
        raise ClusterError(
            "dask-jobqueue is not installed",
            expected="dask-jobqueue, which starts Dask workers as SLURM jobs",
            received=f"ImportError: {error}",
            fix="pip install 'morphml_dask[slurm]'",
        ) from error
    return SLURMCluster


def _move_dashboard_address(kwargs: dict[str, Any]) -> None:
    """``dashboard_address`` is the scheduler's: move it into ``scheduler_options``."""
    if "dashboard_address" in kwargs:
        scheduler = dict(kwargs.get("scheduler_options") or {})
        scheduler["dashboard_address"] = kwargs.pop("dashboard_address")
        kwargs["scheduler_options"] = scheduler


def _directives_and_worker_args(
    kwargs: dict[str, Any], config: str, gpus_per_worker: int, gres: str | None
) -> tuple[list[Any], list[str]]:
    """The jobs' ``#SBATCH`` directives and the workers' arguments, as given in ``kwargs``
    (taken out of it) or configured, with the GPUs asked for and offered; GPU jobs also
    get ``kwargs["processes"] = 1``."""
    directives = list(_configured(kwargs, "job_extra_directives", config))
    args = [str(arg) for arg in _configured(kwargs, "worker_extra_args", config)]
    gpus = _gpu_count(gpus_per_worker, gres)
    if gpus:
        directives = _with_gres(directives, gres or "gpu", gpus)
        args = _with_gpu_resource(args, gpus)
        kwargs["processes"] = _one_process(kwargs.get("processes"), config)
    return directives, args


def _configured(kwargs: dict[str, Any], name: str, config: str) -> list[Any]:
    value = kwargs.pop(name, None)
    if value is None:
        value = dask.config.get(config + name.replace("_", "-"), None)
    return list(value or [])


def _check_size(cores: Any, memory: Any, config: str) -> None:
    cores = cores if cores is not None else dask.config.get(config + "cores", None)
    memory = memory if memory is not None else dask.config.get(config + "memory", None)
    if cores is None or memory is None:
        raise ClusterError(
            "the size of a SLURM job is not set",
            expected="cores and memory per job, as arguments or in jobqueue.yaml",
            received=f"cores={cores!r}, memory={memory!r}",
            fix="pass e.g. slurm_cluster(cores=8, memory='64GB'), or set jobqueue.slurm.cores "
            "and jobqueue.slurm.memory in ~/.config/dask/jobqueue.yaml",
        )
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ClusterError(
            "invalid cores",
            expected="a whole number of cores per job, 1 or more",
            received=repr(cores),
            fix="pass e.g. cores=8",
        )
    try:
        valid = parse_bytes(memory) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ClusterError(
            "invalid memory",
            expected="an amount of memory per job, such as '64GB' or '1500MiB'",
            received=repr(memory),
            fix="pass e.g. memory='64GB'",
        )


def _gpu_count(gpus_per_worker: Any, gres: str | None) -> int:
    if (
        isinstance(gpus_per_worker, bool)
        or not isinstance(gpus_per_worker, int)
        or gpus_per_worker < 0
    ):
        raise ClusterError(
            "invalid gpus_per_worker",
            expected="a whole number of GPUs per SLURM job, 0 or more",
            received=repr(gpus_per_worker),
            fix="pass e.g. gpus_per_worker=1 (one worker per job owns all of the job's GPUs)",
        )
    if gres is not None and (not isinstance(gres, str) or not _GRES.match(gres)):
        raise ClusterError(
            "invalid gres",
            expected="a GRES name, optionally with its type: 'gpu' or 'gpu:a100'",
            received=repr(gres),
            fix="pass the name your site's `sinfo -o %G` shows, e.g. gres='gpu'",
        )
    if gres is not None and gpus_per_worker == 0:
        raise ClusterError(
            "gres is set but no GPUs are asked for",
            expected="gpus_per_worker of 1 or more with gres",
            received=f"gres={gres!r}, gpus_per_worker=0",
            fix=f"pass gpus_per_worker=1 (or more) with gres={gres!r}, or leave gres out",
        )
    return gpus_per_worker


def _with_gres(directives: list[Any], gres: str, gpus: int) -> list[Any]:
    """The directives with ``--gres=<gres>:<gpus>``, unless they ask for as many GPUs already
    (the site's jobqueue.yaml); GPUs asked for differently are an error."""
    ours = f"--gres={gres}:{gpus}"
    for directive in map(str, directives):
        if not _GPU_DIRECTIVE.match(directive):
            continue
        if _same_gpus(directive, gres, gpus):
            return directives
        raise ClusterError(
            "GPUs are asked for twice, differently",
            expected=f"one GPU request per job, here {ours!r} for gpus_per_worker={gpus}",
            received=f"job_extra_directives (or jobqueue.yaml) also has {directive!r}",
            fix="remove that directive and let gpus_per_worker (and gres) ask for the GPUs, "
            "or make the two agree",
        )
    return [*directives, ours]


def _same_gpus(directive: str, gres: str, gpus: int) -> bool:
    """Whether a site's directive asks for ``gpus`` GPUs: ``--gpus=<gpus>`` (or a typed
    ``--gres=<gres name>:<type>:<gpus>``) are other spellings of ours."""
    count = _GPU_COUNT.match(directive)
    if count:
        return int(count["count"]) == gpus
    fields = re.split(r"[= ]", directive.strip(), maxsplit=1)[-1].strip().split(":")
    return fields[0] == gres.split(":")[0] and fields[-1] == str(gpus)


def _with_gpu_resource(args: list[str], gpus: int) -> list[str]:
    """The worker arguments with ``GPU=<gpus>`` among its ``--resources`` (comma-separated:
    dask-jobqueue does not quote the worker's command line)."""
    if "--resources" not in args:
        return [*args, "--resources", f"GPU={gpus}"]
    at = args.index("--resources") + 1
    pairs = args[at].replace(",", " ").split()
    resources = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    if "GPU" in resources and resources["GPU"] not in (str(gpus), f"{gpus}.0"):
        raise ClusterError(
            "the workers' GPU resources disagree with gpus_per_worker",
            expected=f"--resources GPU={gpus} (or no GPU resource: it is added)",
            received=f"worker_extra_args (or jobqueue.yaml) has --resources {args[at]!r}",
            fix="remove GPU from --resources and let gpus_per_worker set it",
        )
    if "GPU" not in resources:
        args = [*args[:at], ",".join([*pairs, f"GPU={gpus}"]), *args[at + 1 :]]
    return args


def _one_process(processes: Any, config: str) -> int:
    processes = processes if processes is not None else dask.config.get(config + "processes")
    if processes not in (None, 1):
        raise ClusterError(
            "GPU jobs must run one worker process",
            expected="processes=1 with gpus_per_worker: one worker owns all of the job's GPUs",
            received=f"processes={processes!r}",
            fix="pass processes=1 (or leave it out), and more cores per job for threads",
        )
    return 1


def _walltime_seconds(walltime: Any) -> float | None:
    """Seconds of a SLURM time limit; None when there is none (or it is unlimited)."""
    if walltime is None or str(walltime).upper() in ("INFINITE", "UNLIMITED"):
        return None
    match = _WALLTIME.match(str(walltime).strip())
    seconds = 0
    if match:
        clock = [int(part) for part in match["clock"].split(":")]
        if match["days"] is not None:  # days-hours[:minutes[:seconds]]
            hours, minutes, secs = [*clock, 0, 0][:3]
            seconds = int(match["days"]) * 86400 + hours * 3600 + minutes * 60 + secs
        else:  # minutes, minutes:seconds or hours:minutes:seconds
            weights = {1: [60], 2: [60, 1], 3: [3600, 60, 1]}[len(clock)]
            seconds = sum(w * part for w, part in zip(weights, clock, strict=True))
    if seconds <= 0:
        raise ClusterError(
            "invalid walltime",
            expected="a SLURM time limit above 0: 'MM', 'MM:SS', 'HH:MM:SS', 'D-HH', "
            "'D-HH:MM' or 'D-HH:MM:SS'",
            received=repr(walltime),
            fix="pass e.g. walltime='01:00:00'",
        )
    return float(seconds)


def _seconds(name: str, value: Any) -> float:
    try:
        seconds = float(parse_timedelta(value, default="seconds"))
    except (TypeError, ValueError, KeyError):
        seconds = -1.0
    if not seconds > 0 and not (name.endswith("stagger") and seconds == 0):
        raise ClusterError(
            f"invalid {name}",
            expected="a duration such as '55m', '3600s' or a number of seconds, above 0",
            received=repr(value),
            fix=f"pass e.g. {name}='55m'",
        )
    return seconds


def _flag(args: list[str], flag: str) -> str | None:
    for at, arg in enumerate(args):
        if arg == flag and at + 1 < len(args):
            return args[at + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _with_lifetime(
    args: list[str], walltime: float | None, lifetime: Any, stagger: Any
) -> list[str]:
    """The worker arguments with ``--lifetime`` and ``--lifetime-stagger`` that retire each
    worker before its job's walltime."""
    configured = _flag(args, "--lifetime")
    if configured is not None:
        if lifetime is not None or stagger is not None:
            raise ClusterError(
                "the worker lifetime is set twice",
                expected="lifetime either as an argument or in worker_extra_args / jobqueue.yaml",
                received=f"lifetime={lifetime!r}, lifetime_stagger={stagger!r} and "
                f"--lifetime {configured}",
                fix="drop --lifetime and --lifetime-stagger from worker_extra_args, or the "
                "lifetime arguments",
            )
        life = _seconds("lifetime", configured)
        spread = _seconds("lifetime_stagger", _flag(args, "--lifetime-stagger") or 0)
        _check_lifetime(life, spread, walltime)
        return args
    if lifetime is None and walltime is None:
        return args  # no time limit: workers stay until the cluster scales them down
    if lifetime is None:
        assert walltime is not None
        life = walltime - min(walltime * _MARGIN_FRACTION, _MARGIN_MAX_S)
    else:
        life = _seconds("lifetime", lifetime)
    if stagger is not None:
        spread = _seconds("lifetime_stagger", stagger)
    elif walltime is not None:
        spread = max(0.0, min(_STAGGER_FRACTION * (walltime - life), life / 10))
    else:
        spread = life / 10
    _check_lifetime(life, spread, walltime)
    return [*args, "--lifetime", f"{life:.0f}s", "--lifetime-stagger", f"{spread:.0f}s"]


def _check_lifetime(life: float, spread: float, walltime: float | None) -> None:
    if spread >= life or (walltime is not None and life + spread >= walltime):
        limit = "the lifetime" if walltime is None else f"the walltime ({walltime:.0f}s)"
        raise ClusterError(
            "workers would outlive their SLURM jobs",
            expected=f"lifetime + lifetime_stagger below {limit}, stagger below lifetime",
            received=f"lifetime {life:.0f}s, lifetime_stagger {spread:.0f}s",
            fix="shorten lifetime (or lifetime_stagger), ask for a longer walltime, or leave "
            "both out to derive them from the walltime",
        )

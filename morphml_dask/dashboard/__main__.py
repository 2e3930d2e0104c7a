"""Print the scheduler route modules with the morphml one (for the environment variable
DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES of a scheduler started by hand)."""

from morphml_dask.dashboard import routes_with_morphml

print(repr(routes_with_morphml()))

"""A live web dashboard for the paper and limited-live nodes (``DashboardActor``, ``live.dashboard.actor``)."""

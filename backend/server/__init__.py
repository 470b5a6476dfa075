"""The job server: ZeroMQ ROUTER, job queue, workspace, uploads and CURVE security; the jobs it runs are backend/jobs."""

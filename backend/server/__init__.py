"""The job server: ZeroMQ ROUTER, job queue, workspace, uploads and CURVE security."""

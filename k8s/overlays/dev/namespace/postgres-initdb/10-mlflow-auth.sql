-- In /docker-entrypoint-initdb.d of the dev PostgreSQL (postgres.yaml, ConfigMap dagllm-postgres-initdb).
-- The official image runs it once, when it initialises an empty data volume: psql as POSTGRES_USER
-- (mlflow, the superuser initdb made) on POSTGRES_DB, with ON_ERROR_STOP=1.
-- The database of MLflow's basic-auth app (the database_uri of basic_auth.ini, Secret dagllm-mlflow-auth),
-- owned by mlflow, the role that creates it; the mlflow-db-upgrade Job migrates it.
-- A volume initialised before this file existed never runs it: there, once, as mlflow:
--   CREATE DATABASE mlflow_auth OWNER mlflow;   (docs/deploy.md)
CREATE DATABASE mlflow_auth;

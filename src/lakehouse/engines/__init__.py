"""Helpers of the engine handlers (Spark, dbt): child processes, snapshot inputs, staged outputs."""

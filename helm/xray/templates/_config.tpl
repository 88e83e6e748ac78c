{{/*
xray.toml, rendered from `config` and the chart's own settings. Secrets are
left out: the pods get them as XRAY_* environment variables from the Secret.
Strings go through toJson: a JSON string is a valid TOML basic string.
*/}}
{{- define "xray.toml" -}}
{{- $c := .Values.config -}}
{{- $migrateOnStart := not .Values.migrations.job.enabled -}}
# Rendered by the xray Helm chart ({{ .Chart.Name }}-{{ .Chart.Version }}) from its values.
# Secrets are not in this file: they come from XRAY_* environment variables.

[receivers.otlp]
grpc_addr = "0.0.0.0:4317"
http_addr = "0.0.0.0:4318"
max_message_bytes = {{ $c.receivers.otlp.max_message_bytes | int64 }}

[api]
addr = "0.0.0.0:8080"
cors_origins = {{ $c.api.cors_origins | toJson }}

[storage]
backend = {{ $c.storage.backend | toJson }}

[storage.clickhouse]
url = {{ include "xray.clickhouse.url" . | toJson }}
database = {{ include "xray.clickhouse.database" . | toJson }}
user = {{ include "xray.clickhouse.user" . | toJson }}
cluster = {{ include "xray.clickhouse.cluster" . | toJson }}
ttl_days = {{ $c.storage.clickhouse.ttl_days | int64 }}
async_insert = {{ $c.storage.clickhouse.async_insert }}
migrate_on_start = {{ $migrateOnStart }}

[storage.postgres]
max_connections = {{ $c.storage.postgres.max_connections | int64 }}
migrate_on_start = {{ $migrateOnStart }}
{{- if $c.sinks.postgres.enabled }}

[sinks.postgres]
max_connections = {{ $c.sinks.postgres.max_connections | int64 }}
migrate_on_start = {{ $migrateOnStart }}
{{- end }}

[pipeline]
batch_max_rows = {{ $c.pipeline.batch_max_rows | int64 }}
flush_interval_ms = {{ $c.pipeline.flush_interval_ms | int64 }}
write_timeout_ms = {{ $c.pipeline.write_timeout_ms | int64 }}
shutdown_timeout_ms = {{ $c.pipeline.shutdown_timeout_ms | int64 }}
max_queue_bytes = {{ $c.pipeline.max_queue_bytes | int64 }}
spool_enabled = {{ $c.pipeline.spool_enabled }}
spool_dir = "/var/lib/xray/spool"
spool_max_bytes = {{ $c.pipeline.spool_max_bytes | int64 }}
spool_fsync = {{ $c.pipeline.spool_fsync | toJson }}
spool_fsync_interval_ms = {{ $c.pipeline.spool_fsync_interval_ms | int64 }}
retry_initial_backoff_ms = {{ $c.pipeline.retry_initial_backoff_ms | int64 }}
retry_max_backoff_ms = {{ $c.pipeline.retry_max_backoff_ms | int64 }}

[limits]
max_attribute_bytes = {{ $c.limits.max_attribute_bytes | int64 }}
max_attributes_per_span = {{ $c.limits.max_attributes_per_span | int64 }}
max_events_per_span = {{ $c.limits.max_events_per_span | int64 }}
max_steps_per_execution = {{ $c.limits.max_steps_per_execution | int64 }}
max_candidates_per_step = {{ $c.limits.max_candidates_per_step | int64 }}

[auth]
required = {{ $c.auth.required }}
cache_ttl_ms = {{ $c.auth.cache_ttl_ms | int64 }}

[auth.rate_limit]
requests_per_sec = {{ $c.auth.rate_limit.requests_per_sec | float64 }}
burst = {{ $c.auth.rate_limit.burst | int64 }}

[log]
level = {{ $c.log.level | toJson }}
format = {{ $c.log.format | toJson }}
{{ end }}

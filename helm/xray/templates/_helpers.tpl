{{/* Chart name, shortened to fit label values. */}}
{{- define "xray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources. */}}
{{- define "xray.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "xray.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "xray.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: xray
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels shared by every component. */}}
{{- define "xray.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "collector"). */}}
{{- define "xray.componentSelectorLabels" -}}
{{ include "xray.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component. */}}
{{- define "xray.componentLabels" -}}
{{ include "xray.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The X-Ray image. */}}
{{- define "xray.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the ServiceAccount the X-Ray pods use. */}}
{{- define "xray.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "xray.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret the pods read: the user's or the chart's. */}}
{{- define "xray.secretName" -}}
{{- default (include "xray.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Name of the bundled ClickHouse's resources. */}}
{{- define "xray.clickhouse.fullname" -}}
{{- printf "%s-clickhouse" (include "xray.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ClickHouse URL, database, user and cluster X-Ray uses. */}}
{{- define "xray.clickhouse.url" -}}
{{- if .Values.clickhouse.bundled.enabled }}
{{- printf "http://%s:8123" (include "xray.clickhouse.fullname" .) }}
{{- else }}
{{- .Values.clickhouse.external.url }}
{{- end }}
{{- end }}

{{- define "xray.clickhouse.database" -}}
{{- if .Values.clickhouse.bundled.enabled }}{{ .Values.clickhouse.bundled.database }}{{ else }}{{ .Values.clickhouse.external.database }}{{ end }}
{{- end }}

{{- define "xray.clickhouse.user" -}}
{{- if .Values.clickhouse.bundled.enabled }}{{ .Values.clickhouse.bundled.user }}{{ else }}{{ .Values.clickhouse.external.user }}{{ end }}
{{- end }}

{{- define "xray.clickhouse.cluster" -}}
{{- if .Values.clickhouse.bundled.enabled }}{{ "" }}{{ else }}{{ .Values.clickhouse.external.cluster }}{{ end }}
{{- end }}

{{/*
Checks that the values make sense together; fails the render with a message
saying what to change. values.schema.json checks each value on its own.
*/}}
{{- define "xray.validate" -}}
{{- $c := .Values.config }}
{{- if and (eq $c.storage.backend "clickhouse") (not .Values.clickhouse.bundled.enabled) (not .Values.clickhouse.external.url) }}
{{- fail "config.storage.backend is clickhouse: set clickhouse.external.url to your ClickHouse, or clickhouse.bundled.enabled=true to try X-Ray with a bundled single-node ClickHouse" }}
{{- end }}
{{- if and .Values.clickhouse.bundled.enabled (ne $c.storage.backend "clickhouse") }}
{{- fail "clickhouse.bundled.enabled is true but config.storage.backend is not clickhouse: set config.storage.backend=clickhouse, or turn the bundled ClickHouse off" }}
{{- end }}
{{- if and (eq $c.storage.backend "postgres") (not .Values.secrets.existingSecret) (not .Values.secrets.postgresUrl) }}
{{- fail "config.storage.backend is postgres: set secrets.postgresUrl (or secrets.existingSecret with the key secrets.keys.postgresUrl)" }}
{{- end }}
{{- if and $c.sinks.postgres.enabled (not .Values.secrets.existingSecret) (not .Values.secrets.sinkPostgresUrl) }}
{{- fail "config.sinks.postgres.enabled is true: set secrets.sinkPostgresUrl (or secrets.existingSecret with the key secrets.keys.sinkPostgresUrl)" }}
{{- end }}
{{- if and .Values.api.ingress.enabled (not .Values.api.ingress.hosts) }}
{{- fail "api.ingress.enabled is true: list the hosts to serve in api.ingress.hosts, e.g. [{host: xray.example.com, paths: [{path: /, pathType: Prefix}]}]" }}
{{- end }}
{{- if and .Values.collector.autoscaling.enabled (lt (int .Values.collector.autoscaling.maxReplicas) (int .Values.collector.autoscaling.minReplicas)) }}
{{- fail "collector.autoscaling.maxReplicas must be at least collector.autoscaling.minReplicas" }}
{{- end }}
{{- end }}

{{/*
A generated secret value that survives upgrades: the value already in the
release's Secret when there is one, else a new random one.
Include with (dict "ctx" $ "key" "admin-token" "length" 40).
*/}}
{{- define "xray.generatedSecret" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "xray.fullname" .ctx) }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}

{{/*
Whether the migration Job runs before install (stores that exist before the
release) or after it (the bundled ClickHouse is created by the release).
*/}}
{{- define "xray.migrations.hook" -}}
{{- if .Values.clickhouse.bundled.enabled }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}

{{/*
The XRAY_* variables carrying secrets, read from the Secret named by
`secret`. Include with (dict "ctx" $ "secret" NAME).
*/}}
{{- define "xray.secretEnv" -}}
{{- $v := .ctx.Values }}
{{- if eq $v.config.storage.backend "clickhouse" }}
- name: XRAY_STORAGE__CLICKHOUSE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $v.secrets.keys.clickhousePassword }}
      optional: true
{{- end }}
{{- if eq $v.config.storage.backend "postgres" }}
- name: XRAY_STORAGE__POSTGRES__URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $v.secrets.keys.postgresUrl }}
{{- end }}
{{- if $v.config.sinks.postgres.enabled }}
- name: XRAY_SINKS__POSTGRES__URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $v.secrets.keys.sinkPostgresUrl }}
{{- end }}
{{- end }}

{{/* The admin token variable (the API pods only: the collector and the migration Job need none). */}}
{{- define "xray.adminTokenEnv" -}}
- name: XRAY_AUTH__ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "xray.secretName" . }}
      key: {{ .Values.secrets.keys.adminToken }}
      optional: true
{{- end }}

{{/* Topology spread constraints with the component's selector filled in when left out. */}}
{{- define "xray.topologySpread" -}}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "xray.componentSelectorLabels" (dict "ctx" $.ctx "component" $.component) | fromYaml)) }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end }}

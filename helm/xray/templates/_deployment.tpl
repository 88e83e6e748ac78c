{{/*
A Deployment of one X-Ray component. Include with
(dict "ctx" $ "component" "collector" "values" .Values.collector
      "subcommand" "collector" "ports" LIST "replicas" BOOL "adminToken" BOOL).
Only the dashboard API gets the admin token: the collector has no use for it.
*/}}
{{- define "xray.deployment" -}}
{{- $ctx := .ctx }}
{{- $v := .values }}
{{- $grace := add (div (int64 $ctx.Values.config.pipeline.shutdown_timeout_ms) 1000) 10 }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "xray.fullname" $ctx }}-{{ .component }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "xray.componentLabels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
spec:
  {{- if .replicas }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "xray.componentSelectorLabels" (dict "ctx" $ctx "component" .component) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "xray.componentLabels" (dict "ctx" $ctx "component" .component) | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "xray.toml" $ctx | sha256sum }}
        checksum/secret: {{ toJson $ctx.Values.secrets | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "xray.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ $ctx.Values.serviceAccount.automountToken }}
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $ctx.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $grace }}
      containers:
        - name: {{ .component }}
          image: {{ include "xray.image" $ctx | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          args:
            - {{ .subcommand }}
            - --config
            - /etc/xray/xray.toml
            {{- with $v.extraArgs }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- toYaml .ports | nindent 12 }}
          env:
            {{- include "xray.secretEnv" (dict "ctx" $ctx "secret" (include "xray.secretName" $ctx)) | trim | nindent 12 }}
            {{- if .adminToken }}
            {{- include "xray.adminTokenEnv" $ctx | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            {{- toYaml $v.livenessProbe | nindent 12 }}
          readinessProbe:
            {{- toYaml $v.readinessProbe | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/xray
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if eq .component "collector" }}
            - name: spool
              mountPath: /var/lib/xray/spool
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "xray.fullname" $ctx }}
        - name: tmp
          emptyDir: {}
        {{- if eq .component "collector" }}
        - name: spool
          emptyDir:
            sizeLimit: {{ $v.spool.sizeLimit }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- include "xray.topologySpread" (dict "ctx" $ctx "component" $.component "constraints" .) | trim | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
A PodDisruptionBudget of one component. Include with
(dict "ctx" $ "component" "collector" "values" .Values.collector.podDisruptionBudget).
*/}}
{{- define "xray.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "xray.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "xray.componentLabels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ .values.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "xray.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}

{{/*
A ServiceMonitor of one component. Include with
(dict "ctx" $ "component" "collector" "port" "otlp-http").
*/}}
{{- define "xray.serviceMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "xray.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "xray.componentLabels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
    {{- with .ctx.Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "xray.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .ctx.Release.Namespace }}
  endpoints:
    - port: {{ .port }}
      path: /metrics
      interval: {{ .ctx.Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .ctx.Values.serviceMonitor.scrapeTimeout }}
{{- end }}

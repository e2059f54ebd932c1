{{- define "tether.labels" -}}
app.kubernetes.io/part-of: tether
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "tether.image" -}}
{{ .root.Values.image.registry }}/{{ .name }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{- define "tether.redisUrl" -}}
{{- if .Values.redis.bundled -}}
redis://:$(TETHER_REDIS_PASSWORD)@{{ .Release.Name }}-redis.{{ .Release.Namespace }}.svc:6379/0
{{- else -}}
{{ required "redis.url is required when redis.bundled is false" .Values.redis.url }}
{{- end }}
{{- end }}

{{- define "tether.podSecurity" -}}
# No Service links: they would put TETHER_EGRESS_PORT=tcp://… and the like beside the settings.
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{- define "tether.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: ["ALL"]
{{- end }}

{{- define "tether.env" -}}
{{- if .Values.redis.bundled }}
- name: TETHER_REDIS_PASSWORD  # expanded into TETHER_REDIS_URL below
  valueFrom:
    secretKeyRef:
      name: {{ .Release.Name }}-redis
      key: password
{{- end }}
- name: TETHER_SYSTEM_NAMESPACE
  value: {{ .Release.Namespace }}
- name: TETHER_REDIS_URL
  value: {{ include "tether.redisUrl" . | quote }}
- name: TETHER_RETENTION_SECONDS
  value: {{ .Values.retentionSeconds | quote }}
- name: TETHER_RUN_TOKEN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Release.Name }}-run-token-key
      key: key
{{- /* The sandbox policy: the operator builds pods by it, the gateway refuses requests past it. */}}
- name: TETHER_SANDBOX_IMAGE
  value: {{ include "tether.image" (dict "root" . "name" .Values.sandbox.image) }}
{{- with .Values.sandbox.runtimeClassName }}
- name: TETHER_SANDBOX_RUNTIME_CLASS_NAME
  value: {{ . }}
{{- end }}
{{- /* Webhooks: the gateway pings, the operator delivers; both call only what these allow. */}}
- name: TETHER_WEBHOOK_ALLOW_PRIVATE
  value: {{ .Values.webhooks.allowPrivate | quote }}
- name: TETHER_WEBHOOK_REQUIRE_HTTPS
  value: {{ .Values.webhooks.requireHttps | quote }}
- name: TETHER_WEBHOOK_RETRY_DELAYS
  value: {{ .Values.webhooks.retryDelays | toJson | quote }}
- name: TETHER_WEBHOOK_HOSTS
  value: {{ .Values.webhooks.hosts | toJson | quote }}
- name: TETHER_WEBHOOK_LOOPBACK_HOST
  value: {{ .Values.webhooks.loopbackHost | quote }}
- name: TETHER_EGRESS_PROXY_URL
  value: http://{{ .Release.Name }}-egress.{{ .Release.Namespace }}.svc:{{ .Values.egress.port }}
{{- end }}

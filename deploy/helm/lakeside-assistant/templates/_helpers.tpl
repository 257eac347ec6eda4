{{/* Names, labels and shared pieces of the chart's manifests. */}}

{{/* <release>-lakeside-assistant, or the release name when it already holds the chart's name; short enough for "-generator". */}}
{{- define "lakeside.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lakeside.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of one component; call with (dict "root" $ "component" "rasa"). */}}
{{- define "lakeside.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lakeside.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "lakeside.fullname" .) -}}
{{- end -}}

{{/* An environment variable from the chart's Secret, under its own name; (dict "root" $ "name" "TRACKER_STORE_URL"). */}}
{{- define "lakeside.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "lakeside.secretName" .root }}
      key: {{ .name }}
{{- end -}}

{{/* Where the action server finds the chat model (GENERATOR_URL): vLLM's Service when it is enabled, else the CPU generator's. */}}
{{- define "lakeside.generatorUrl" -}}
{{- if .Values.generator.vllm.enabled -}}
http://{{ include "lakeside.fullname" . }}-vllm:8000/v1
{{- else -}}
http://{{ include "lakeside.fullname" . }}-generator:8000/v1
{{- end -}}
{{- end -}}

{{/* Where it finds the embeddings (EMBEDDINGS_URL): always the CPU generator (vLLM serves chat only). */}}
{{- define "lakeside.embeddingsUrl" -}}
http://{{ include "lakeside.fullname" . }}-generator:8000/v1
{{- end -}}

{{- define "lakeside.generatorModel" -}}
{{- if .Values.generator.vllm.enabled -}}
{{- .Values.generator.vllm.servedModelName -}}
{{- else -}}
{{- .Values.generator.model -}}
{{- end -}}
{{- end -}}

{{- define "lakeside.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{/* Prometheus scrape annotations of a pod; call with the port. */}}
{{- define "lakeside.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end -}}

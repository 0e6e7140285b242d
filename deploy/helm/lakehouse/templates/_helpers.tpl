{{/* Names, labels and the shared pieces of every lakehouse container. */}}

{{- define "lakehouse.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lakehouse.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lakehouse.labels" -}}
app.kubernetes.io/name: {{ include "lakehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lakehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lakehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lakehouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lakehouse.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.create -}}
{{- printf "%s-secrets" (include "lakehouse.fullname" .) -}}
{{- else -}}
{{- required "set secrets.existingSecret (or secrets.create for a trial)" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "lakehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lakehouse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The environment of the control plane and the migrations Job: settings, S3 credentials by reference
and, with externalS3.vending.roleArn, the vending settings (docs/security.md, "Storage credentials per
lease"). */}}
{{- define "lakehouse.env" -}}
{{ include "lakehouse.storageEnv" . }}
{{ include "lakehouse.s3Keys" . }}
{{- with .Values.externalS3.vending }}
{{- if .roleArn }}
- name: LAKEHOUSE_S3_VENDING_ROLE_ARN
  value: {{ .roleArn | quote }}
- name: LAKEHOUSE_S3_VENDING_DURATION_S
  value: {{ .durationS | quote }}
{{- if .stsEndpoint }}
- name: LAKEHOUSE_S3_STS_ENDPOINT
  value: {{ .stsEndpoint | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The workers' environment: settings, and S3 credentials by reference only when the control plane
does not vend — with externalS3.vending.roleArn each phase gets short-lived credentials for its lease's
workspace (tables and staging) and the workers hold no S3 key. Workers get no database URL or secret
key: they speak only the HTTP contract. */}}
{{- define "lakehouse.workerEnv" -}}
{{ include "lakehouse.storageEnv" . }}
{{- if not .Values.externalS3.vending.roleArn }}
{{ include "lakehouse.s3Keys" . }}
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where the warehouse is (every lakehouse container). */}}
{{- define "lakehouse.storageEnv" -}}
- name: LAKEHOUSE_HOME
  value: /var/lib/lakehouse
- name: LAKEHOUSE_WAREHOUSE
  value: {{ .Values.externalS3.warehouse | quote }}
{{- if .Values.externalS3.artifacts }}
- name: LAKEHOUSE_ARTIFACT_STORE
  value: {{ .Values.externalS3.artifacts | quote }}
{{- end }}
- name: AWS_REGION
  value: {{ .Values.externalS3.region | quote }}
{{- if .Values.externalS3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ .Values.externalS3.endpoint | quote }}
{{- end }}
{{- end -}}

{{/* The S3 key by reference (the control plane's own; the workers' when it does not vend). */}}
{{- define "lakehouse.s3Keys" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "lakehouse.secretName" . }}
      key: {{ .Values.secrets.keys.awsAccessKeyId }}
      optional: true
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "lakehouse.secretName" . }}
      key: {{ .Values.secrets.keys.awsSecretAccessKey }}
      optional: true
{{- end -}}

{{- define "lakehouse.volumes" -}}
- name: tmp
  emptyDir: {}
- name: home
{{- if .persistent }}
  persistentVolumeClaim:
    claimName: {{ include "lakehouse.fullname" .root }}-home
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* What only the control plane and the migrations Job get: the metadata database and the keys. */}}
{{- define "lakehouse.serverEnv" -}}
- name: LAKEHOUSE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "lakehouse.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
- name: LAKEHOUSE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "lakehouse.secretName" . }}
      key: {{ .Values.secrets.keys.secretKey }}
- name: LAKEHOUSE_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "lakehouse.secretName" . }}
      key: {{ .Values.secrets.keys.metricsToken }}
      optional: true
{{- end -}}

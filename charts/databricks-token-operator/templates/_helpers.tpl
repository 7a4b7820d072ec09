{{- define "dbtoken.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dbtoken.fullname" -}}
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

{{- define "dbtoken.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbtoken.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dbtoken.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "dbtoken.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dbtoken.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dbtoken.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A digest, when given, pins the image whatever the tag says. */}}
{{- define "dbtoken.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator does in a namespace it watches: reconcile DatabricksTokens, read
DatabricksWorkspaces, own the token Secrets (credential Secrets are read with get), record
events, and restart the rolloutRestartTargets of a token.
*/}}
{{- define "dbtoken.namespacedRules" -}}
- apiGroups: [dbtoken.dev]
  resources: [databrickstokens]
  verbs: [get, list, watch, patch, update]
- apiGroups: [dbtoken.dev]
  resources: [databrickstokens/status]
  verbs: [get, patch, update]
- apiGroups: [dbtoken.dev]
  resources: [databrickstokens/finalizers]
  verbs: [update]
- apiGroups: [dbtoken.dev]
  resources: [databricksworkspaces]
  verbs: [get, list, watch]
- apiGroups: [dbtoken.dev]
  resources: [databricksworkspaces/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
{{- end }}

{{- define "dbtoken.clusterWorkspaceRules" -}}
- apiGroups: [dbtoken.dev]
  resources: [clusterdatabricksworkspaces]
  verbs: [get, list, watch]
- apiGroups: [dbtoken.dev]
  resources: [clusterdatabricksworkspaces/status]
  verbs: [get, patch, update]
{{- end }}

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
{{- /*
Only the verbs the operator calls: it writes with patches (server-side apply for Secrets and
status, merge patches for finalizers and restart annotations), never with update. Finalizers
keep `update`: the API server requires it to set blockOwnerDeletion on the Secret's owner
reference. Secrets keep `create` for writes that must not overwrite an existing Secret.
*/}}
{{- define "dbtoken.namespacedRules" -}}
- apiGroups: [dbtoken.dev]
  resources: [databrickstokens]
  verbs: [get, list, watch, patch]
- apiGroups: [dbtoken.dev]
  resources: [databrickstokens/status]
  verbs: [patch]
- apiGroups: [dbtoken.dev]
  resources: [databrickstokens/finalizers]
  verbs: [update]
# patch: the finalizer that keeps a workspace until its tokens are revoked.
- apiGroups: [dbtoken.dev]
  resources: [databricksworkspaces]
  verbs: [get, list, watch, patch]
- apiGroups: [dbtoken.dev]
  resources: [databricksworkspaces/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [patch]
{{- end }}

{{- define "dbtoken.clusterWorkspaceRules" -}}
- apiGroups: [dbtoken.dev]
  resources: [clusterdatabricksworkspaces]
  verbs: [get, list, watch, patch]
- apiGroups: [dbtoken.dev]
  resources: [clusterdatabricksworkspaces/status]
  verbs: [patch]
{{- end }}

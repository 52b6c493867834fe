{{/* Name of the chart, overridable. */}}
{{- define "sodguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the release's objects. */}}
{{- define "sodguard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sodguard.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sodguard.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sodguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sodguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sodguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sodguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sodguard
{{- end }}

{{- define "sodguard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt / tls.key (and ca.crt). */}}
{{- define "sodguard.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required with tls.mode=secret" .Values.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "sodguard.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names of the webhook Service. */}}
{{- define "sodguard.serviceDNSNames" -}}
{{- $svc := include "sodguard.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Whether the replicas elect a leader ("true" or ""). */}}
{{- define "sodguard.leaderElection" -}}
{{- $e := toString .Values.leaderElection.enabled -}}
{{- if eq $e "auto" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- else if eq $e "true" -}}
true
{{- end -}}
{{- end }}

{{- define "sodguard.leaseName" -}}
{{- default (include "sodguard.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "sodguard.validate" -}}
{{- if not (has (toString .Values.leaderElection.enabled) (list "auto" "true" "false")) }}
{{- fail (printf "leaderElection.enabled must be auto, true or false, not %v" .Values.leaderElection.enabled) }}
{{- end }}
{{- if and .Values.clientAuth.enabled (not (or .Values.clientAuth.caBundle .Values.clientAuth.existingConfigMap)) }}
{{- fail "clientAuth.enabled needs clientAuth.caBundle or clientAuth.existingConfigMap" }}
{{- end }}
{{- if and .Values.clientAuth.caBundle .Values.clientAuth.existingConfigMap }}
{{- fail "clientAuth.caBundle and clientAuth.existingConfigMap contradict each other: give one" }}
{{- end }}
{{- if not (has .Values.tls.mode (list "helm" "certManager" "secret")) }}
{{- fail (printf "tls.mode must be helm, certManager or secret, not %q" .Values.tls.mode) }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Fail" "Ignore")) }}
{{- fail (printf "webhook.failurePolicy must be Fail or Ignore, not %q" .Values.webhook.failurePolicy) }}
{{- end }}
{{- $t := int .Values.webhook.timeoutSeconds }}
{{- if or (lt $t 1) (gt $t 30) }}
{{- fail "webhook.timeoutSeconds must be between 1 and 30" }}
{{- end }}
{{- if not (has .Values.podAntiAffinity (list "soft" "hard" "none")) }}
{{- fail (printf "podAntiAffinity must be soft, hard or none, not %q" .Values.podAntiAffinity) }}
{{- end }}
{{- if not (has .Values.log.format (list "json" "text")) }}
{{- fail (printf "log.format must be json or text, not %q" .Values.log.format) }}
{{- end }}
{{- end }}

{{/*
The namespaces the webhook never sees (its namespaceSelector): the release
namespace and webhook.excludeNamespaces, as a JSON list. The same list goes
to `sodguard serve --excluded-namespaces`, so that ServiceAccounts there,
whose creation is never checked, are governed as soon as a binding names
them (R7.10).
*/}}
{{- define "sodguard.excludedNamespaces" -}}
{{- concat (list .Release.Namespace) .Values.webhook.excludeNamespaces | uniq | toJson }}
{{- end }}

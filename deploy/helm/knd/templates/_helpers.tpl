{{- define "knd.name" -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "knd.serviceAccountName" -}}{{ default (include "knd.name" .) .Values.serviceAccount.name }}{{- end -}}
{{- define "knd.labels" -}}
app.kubernetes.io/name: knd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "knd.selectorLabels" -}}
app.kubernetes.io/name: knd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

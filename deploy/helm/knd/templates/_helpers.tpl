{{- /*
Names. `knd.name` is the chart name (or nameOverride); `knd.fullname` names every object:
fullnameOverride, else the release name when it already contains the chart name (release "knd"
gives "knd"), else "<release>-<name>". Same rules and keys as DraNet's chart.
*/ -}}
{{- define "knd.chartName" -}}{{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "knd.name" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "knd.chartName" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- define "knd.serviceAccountName" -}}{{ default (include "knd.name" .) .Values.serviceAccount.name }}{{- end -}}
{{- define "knd.labels" -}}
app.kubernetes.io/name: {{ include "knd.chartName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- define "knd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "knd.chartName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- /* The state file: DraNet's args.dbPath when set (non-empty), else statePath. */ -}}
{{- define "knd.statePath" -}}{{ (.Values.args | default dict).dbPath | default .Values.statePath }}{{- end -}}
{{- define "knd.metricsPort" -}}{{ .Values.metricsPort | default 9177 }}{{- end -}}
{{- /*
knd.renderDeviceClass: true unless a DeviceClass of that name already exists and this release
does not own it (e.g. the `dra.net` class a DraNet install created by hand). Such a class is
left alone: it selects the same driver name, so claims keep working. `lookup` returns nothing
under `helm template`, so the classes always render there.
*/ -}}
{{- define "knd.renderDeviceClass" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- $existing := lookup "resource.k8s.io/v1" "DeviceClass" "" $name -}}
{{- if not $existing -}}true
{{- else -}}
{{- $ann := $existing.metadata.annotations | default dict -}}
{{- if and (eq (index $ann "meta.helm.sh/release-name" | default "") $root.Release.Name) (eq (index $ann "meta.helm.sh/release-namespace" | default "") $root.Release.Namespace) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "tessera-csi.labels" -}}
app.kubernetes.io/name: tessera-csi
app.kubernetes.io/part-of: tessera
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The node pods' selector labels. */}}
{{- define "tessera-csi.selectorLabels" -}}
app.kubernetes.io/name: tessera-csi
app.kubernetes.io/component: node
{{- end }}

{{/* The plugin directory on the host, where the kubelet finds the CSI socket. */}}
{{- define "tessera-csi.pluginDir" -}}
{{ trimSuffix "/" .Values.kubeletDir }}/plugins/{{ .Values.driverName }}
{{- end }}

{{/* repository:tag of an image block. */}}
{{- define "tessera-csi.image" -}}
{{ .repository }}:{{ .tag }}
{{- end }}

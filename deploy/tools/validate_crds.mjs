// Validates Prometheus Operator and cert-manager custom resources against
// the CRD schemas of @kubernetes-models/prometheus-operator and
// @kubernetes-models/cert-manager (generated from each project's CRDs).
// Input: the JSON array written by validate_k8s.py.
//
//   node validate_crds.mjs CUSTOM.json
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";

const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "cert-manager.io/v1/Certificate": Certificate,
};

let failures = 0;
for (const { source, resource } of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const Model = models[`${resource.apiVersion}/${resource.kind}`];
  if (!Model) {
    console.log(`FAIL ${source}: no schema for ${resource.apiVersion} ${resource.kind}`);
    failures++;
    continue;
  }
  try {
    new Model(resource).validate();
    console.log(`ok   ${source} (CRD schema ${resource.apiVersion})`);
  } catch (e) {
    console.log(`FAIL ${source}: ${e.message}`);
    failures++;
  }
}
process.exit(failures ? 1 : 0);

// Validates Prometheus Operator and cert-manager custom resources against
// the CRD schemas of @kubernetes-models/prometheus-operator and
// @kubernetes-models/cert-manager (generated from each project's CRDs).
// Input: the JSON array written by validate_k8s.py.
//
// Two checks per resource: the CRD schema (types, enums, required fields),
// and strictness, which the CRD schemas do not express: each resource is
// written as an object literal of the package's TypeScript type and
// compiled by tsc, whose excess-property check refuses any field, at any
// depth, that the type does not declare (as kubectl's strict field
// validation would).
//
//   node validate_crds.mjs CUSTOM.json
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";

// apiVersion/kind: the model, its module and its TypeScript interface.
const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": [ServiceMonitor, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor", "IServiceMonitor"],
  "monitoring.coreos.com/v1/PodMonitor": [PodMonitor, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor", "IPodMonitor"],
  "monitoring.coreos.com/v1/PrometheusRule": [PrometheusRule, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule", "IPrometheusRule"],
  "cert-manager.io/v1/Certificate": [Certificate, "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate", "ICertificate"],
};

const here = dirname(fileURLToPath(import.meta.url));
let failures = 0;
const strict = [];
for (const { source, resource } of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const entry = models[`${resource.apiVersion}/${resource.kind}`];
  if (!entry) {
    console.log(`FAIL ${source}: no schema for ${resource.apiVersion} ${resource.kind}`);
    failures++;
    continue;
  }
  const [Model, module, type] = entry;
  try {
    new Model(resource).validate();
    console.log(`ok   ${source} (CRD schema ${resource.apiVersion})`);
  } catch (e) {
    console.log(`FAIL ${source}: ${e.message}`);
    failures++;
  }
  strict.push({ source, resource, module, type });
}

if (strict.length > 0) {
  // Inside node_modules, so that the packages resolve; one file, one tsc.
  const dir = join(here, "node_modules", ".strict-check");
  mkdirSync(dir, { recursive: true });
  const lines = strict.map(({ module, type }, i) => `import type { ${type} as T${i} } from "${module}";`);
  strict.forEach(({ source, resource }, i) => {
    lines.push(`// ${source}`);
    lines.push(`export const r${i}: T${i} = ${JSON.stringify(resource)};`);
  });
  const file = join(dir, "resources.ts");
  writeFileSync(file, lines.join("\n") + "\n");
  try {
    execFileSync(join(here, "node_modules", ".bin", "tsc"),
      ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext", file],
      { encoding: "utf8", stdio: "pipe" });
    for (const { source } of strict) console.log(`ok   ${source} (no unknown field)`);
  } catch (e) {
    // tsc names the line of the resource: map it back to its source.
    const text = readFileSync(file, "utf8").split("\n");
    for (const line of `${e.stdout}`.split("\n").filter((l) => l.includes("error"))) {
      const n = Number(/\((\d+),/.exec(line)?.[1] ?? 0);
      console.log(`FAIL ${(text[n - 2] ?? "").replace(/^\/\/ /, "")}: ${line.replace(/^[^:]*: /, "")}`);
    }
    failures++;
  }
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failures ? 1 : 0);

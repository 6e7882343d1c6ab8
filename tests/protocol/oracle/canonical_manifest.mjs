// Test oracle: the canonical manifest JSON and its digest, computed by JavaScript itself.
//
// Written from the rules in protocol/README.md ("Canonical JSON and digest"), independently of the
// Python implementation under test: JSON.parse gives JavaScript's numbers, JSON.stringify gives
// JavaScript's escaping and number formatting, and Array.prototype.sort gives UTF-16 key order.
// Strings are joined by hand because JSON.stringify of an object puts integer-like keys first.
//
// Input: one JSON manifest per line on stdin. Output: one line per input,
// {"canonicalJson": "...", "digest": "sha256:..."}.
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';

const str = (value) => JSON.stringify(value);
const sorted = (record) => Object.keys(record).sort();

function canonicalValue(value) {
  if (value === null || typeof value !== 'object') return str(value);
  if (Array.isArray(value)) return `[${value.map(canonicalValue).join(',')}]`;
  return `{${sorted(value).map((key) => `${str(key)}:${canonicalValue(value[key])}`).join(',')}}`;
}

function canonicalManifest(m) {
  const activities = (record) =>
    sorted(record)
      .map((name) => {
        const a = record[name];
        return `${str(name)}:{"contractHash":${str(a.contractHash)},"implementationRevision":${str(a.implementationRevision)}}`;
      })
      .join(',');
  const workflows = sorted(m.workflows)
    .map((name) => {
      const w = m.workflows[name];
      return (
        `${str(name)}:{"workflowVersion":${str(w.workflowVersion)},"workflowRevision":${str(w.workflowRevision)},` +
        `"contractHash":${str(w.contractHash)},"activities":{${activities(w.activities)}}}`
      );
    })
    .join(',');
  return (
    `{"manifestVersion":${str(m.manifestVersion)},"protocolVersion":${str(m.protocolVersion)},` +
    `"sdkVersion":${str(m.sdkVersion)},"runtime":{"name":${str(m.runtime.name)},"version":${str(m.runtime.version)}},` +
    `"deployment":{"name":${str(m.deployment.name)},"buildId":${str(m.deployment.buildId)},` +
    `"artifactDigest":${str(m.deployment.artifactDigest)}},"workflows":{${workflows}},` +
    `"capabilities":${canonicalValue(m.capabilities)}}`
  );
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  const canonicalJson = canonicalManifest(JSON.parse(line));
  const digest = 'sha256:' + createHash('sha256').update(canonicalJson, 'utf8').digest('hex');
  process.stdout.write(JSON.stringify({ canonicalJson, digest }) + '\n');
}

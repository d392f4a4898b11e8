// Counts a cache-tests result file the way the published figures count:
// per test kind (the suite's own metadata: required, optimal, check), how
// many ran and how many passed (`true`), over the suite's main test list
// (tests/index.mjs: the CDN-only Surrogate-Control tests the CLI adds are
// left out, as in the published figures). Calibrated on the result files
// the npm release ships: Squid 134/157 required, Apache 124, nginx 96.
//
// usage: node cache-tests-count.mjs SUITE_DIR RESULTS.json [--failing]
//   prints "required PASSED RUN", "optimal ...", "check ...", then with
//   --failing one line per required or optimal test that did not pass:
//   "not-passed", kind, id, the suite's message (tab-separated).
import { readFileSync } from 'fs'
import { pathToFileURL } from 'url'
import path from 'path'

const [suiteDir, resultsFile, flag] = process.argv.slice(2)
const index = pathToFileURL(path.join(suiteDir, 'tests/index.mjs')).href
const suites = (await import(index)).default
const results = JSON.parse(readFileSync(resultsFile, 'utf8'))

const counts = { required: [0, 0], optimal: [0, 0], check: [0, 0] }
const failing = []
for (const suite of suites) {
  for (const test of suite.tests) {
    const result = results[test.id]
    if (result === undefined) continue
    const kind = test.kind || 'required'
    counts[kind][1]++
    if (result === true) counts[kind][0]++
    else if (kind !== 'check') failing.push(['not-passed', kind, test.id, JSON.stringify(result)])
  }
}
for (const [kind, [passed, run]] of Object.entries(counts)) {
  console.log(`${kind} ${passed} ${run}`)
}
if (flag === '--failing') for (const f of failing) console.log(f.join('\t'))

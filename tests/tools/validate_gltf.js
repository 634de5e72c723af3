// Validate a .glb with the Khronos glTF validator (npm package `gltf-validator`) and print its
// issue counts as JSON. Used by tests/test_export.py when node and the package are installed.
const fs = require("fs");
const validator = require("gltf-validator");

validator
  .validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), { maxIssues: 100 })
  .then((report) => {
    const issues = report.issues;
    const errors = issues.messages.filter((m) => m.severity <= 1);
    console.log(JSON.stringify({ numErrors: issues.numErrors, numWarnings: issues.numWarnings, issues: errors }));
  })
  .catch((error) => {
    console.error(String(error));
    process.exit(2);
  });

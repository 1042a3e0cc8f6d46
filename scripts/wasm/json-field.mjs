// Prints FIELD of the JSON object read from stdin (fails if absent).
const field = process.argv[2];
let input = '';
for await (const chunk of process.stdin) input += chunk;
const value = JSON.parse(input)[field];
if (value === undefined) {
  console.error(`no ${field} in ${input}`);
  process.exit(1);
}
console.log(value);

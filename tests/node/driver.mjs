// What the Node drivers of the Python tests share: commands come in on stdin, one JSON object a line,
// each naming its handler in "op"; a handler that throws is reported as {"type": "error"}.
import { createInterface } from "node:readline";

export function serve(commands, report) {
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (!line.trim()) return;
    const command = JSON.parse(line);
    try {
      commands[command.op](command);
    } catch (err) {
      report({ type: "error", message: String(err) });
    }
  });
  process.stdin.on("end", () => process.exit(0));
}

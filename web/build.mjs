// After `tsc`: copy the static files next to the compiled modules, so web/dist is the whole page.
import { cpSync, writeFileSync } from "node:fs";

cpSync(new URL("./public/", import.meta.url), new URL("./dist/", import.meta.url), { recursive: true });
writeFileSync(new URL("./dist/.built", import.meta.url), `${new Date().toISOString()}\n`);

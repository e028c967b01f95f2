import { execFile } from "child_process";

export function findUser(db: any, name: string): Promise<unknown> {
  return db.query("SELECT * FROM users WHERE name = $1", [name]);
}

export function ping(host: string): void {
  execFile("ping", ["-c", "1", host]);
}

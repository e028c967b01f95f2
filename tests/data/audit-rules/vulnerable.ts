import { exec } from "child_process";

export function findUser(db: any, name: string): Promise<unknown> {
  return db.query(`SELECT * FROM users WHERE name = '${name}'`); // expect: injection
}

export function ping(host: string): void {
  exec(`ping -c 1 ${host}`); // expect: command-injection
}

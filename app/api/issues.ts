// Turns zod issues into messages that name the failing field, e.g.
// "memory.startupMiB: must be at least 2". Shared by the configuration and the protocol.
import type { z } from 'zod';

type Issue = z.core.$ZodIssue;

// "disks[1].path", "memory.startupMiB"; the whole value is "(config)".
export function fieldPath(path: readonly PropertyKey[], root = '(value)'): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? root : out;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const part of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'object') return 'an object';
  return String(value);
}

const typeWords: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
};

function issueMessage(issue: Issue, input: unknown): string {
  switch (issue.code) {
    case 'invalid_type': {
      const value = valueAt(input, issue.path);
      if (value === undefined) return 'is required';
      return `must be ${typeWords[issue.expected] ?? issue.expected}, not ${describe(value)}`;
    }
    case 'too_small':
      if (issue.origin === 'string')
        return issue.minimum === 1 ? 'must not be empty' : `must be at least ${issue.minimum} characters`;
      if (issue.origin === 'array') return `must have at least ${issue.minimum} entries`;
      return `must be at least ${issue.minimum}${issue.inclusive === false ? ' (exclusive)' : ''}`;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`;
      if (issue.origin === 'array') return `must have at most ${issue.maximum} entries`;
      return `must be at most ${issue.maximum}`;
    case 'invalid_value':
      return `must be ${issue.values.length === 1 ? '' : 'one of '}${issue.values.map((v) => JSON.stringify(v)).join(', ')}, not ${describe(valueAt(input, issue.path))}`;
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    case 'invalid_format':
      if (issue.format === 'uuid' || issue.format === 'guid') return 'must be a UUID';
      if (issue.format === 'datetime') return 'must be an ISO 8601 date and time';
      return issue.message;
    case 'invalid_union': {
      // A discriminated union names the discriminator in the path and lists its options.
      const options = (issue as { options?: unknown[] }).options;
      if (options) {
        const value = valueAt(input, issue.path);
        const known = options.map((o) => JSON.stringify(o)).join(', ');
        return value === undefined
          ? `is required (one of ${known})`
          : `must be one of ${known}, not ${describe(value)}`;
      }
      return issue.message;
    }
    default:
      return issue.message;
  }
}

// One line per issue, each starting with the field's path.
export function formatIssues(issues: readonly Issue[], input: unknown, root?: string): string[] {
  return issues.map((issue) => `${fieldPath(issue.path, root)}: ${issueMessage(issue, input)}`);
}

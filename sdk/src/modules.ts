/**
 * DSPy-style modules that give app code DSPy.rb's span tree, names, observation types and
 * events (DESIGN §3). A module is a signature name plus an `llm` function you supply (call any
 * provider, parse its answer into fields); the module owns the control flow and the telemetry:
 *
 *   Predict         Predict.forward (span) → llm.generate (generation)
 *   ChainOfThought  ChainOfThought.forward (chain) → llm.generate; event chain_of_thought.reasoning_complete
 *   ReAct           ReAct.forward (agent) → react.iteration (agent) → llm.generate, react.tool_call (tool);
 *                   event react.iteration_complete per iteration, react.max_iterations if the loop runs out
 *   CodeAct         CodeAct.forward (agent) → codeact.iteration (agent) → llm.generate, codeact.code_execution (tool);
 *                   event codeact.iteration_complete per iteration, codeact.max_iterations if the loop runs out
 *
 * If the `llm` function calls a client wrapped with `wrapOpenAI`/`wrapAnthropic`, that call fills
 * in the module's `llm.generate` (model, usage, cost, time to first token) instead of nesting a
 * second generation; otherwise return `usage`/`model` from `llm` and the module records them.
 */
import { EVENT_NAMES, SPAN_NAMES } from '@dspy-o11y/proto';
import { event, runGeneration, span } from './api.js';
import { BudgetExceededError } from './budget.js';
import { SpanImpl, errorMessage, type GenerationHandle, type SpanHandle, type Usage } from './span.js';

export type ModuleName = 'Predict' | 'ChainOfThought' | 'ReAct' | 'CodeAct';
export type Fields = Record<string, unknown>;

export interface ToolInfo {
  name: string;
  description?: string;
}

export interface Tool extends ToolInfo {
  /** Runs the tool; a throw becomes an `Error: …` observation for the next iteration (the run goes on). */
  run(input: unknown): unknown;
}

/**
 * The steps so far, each a copy, for one `llm` call: an llm that trims them in place for its
 * prompt changed the later calls' steps and the run's result (and what its span recorded).
 */
const stepsCopy = (steps: readonly Step[]): Step[] => steps.map((s) => ({ ...s }));

/** One ReAct or CodeAct step, as passed back to `llm` in `trajectory`. */
export interface Step {
  iteration: number;
  thought?: string;
  /** ReAct: the tool name (or `finish`). */
  action?: string;
  actionInput?: unknown;
  /** CodeAct: the code run. */
  code?: string;
  observation?: unknown;
  error?: string;
}

export interface LMRequest {
  module: ModuleName;
  signature: string;
  instructions?: string;
  /** The module's input fields. */
  input: Fields;
  /** ReAct: the tools the model may call. */
  tools?: ToolInfo[];
  /** ReAct / CodeAct: the steps so far. */
  trajectory?: Step[];
  /** ReAct / CodeAct: 1-based iteration. */
  iteration?: number;
}

/**
 * What `llm` returns: the output fields, plus usage/model if no wrapped client recorded them.
 * - Predict: any fields. ChainOfThought: `reasoning` plus the output fields.
 * - ReAct: `thought`, `action` (a tool name, or `finish`) and `action_input`; on `finish`, the
 *   other fields are the module's output.
 * - CodeAct: `thought` and `code`, or `finish: true` (or `action: 'finish'`) with the output fields.
 */
export interface LMResponse {
  output: Fields;
  usage?: Usage;
  model?: string;
  provider?: string;
}

export type LM = (request: LMRequest) => Promise<LMResponse> | LMResponse;

export interface ModuleOptions {
  llm: LM;
  instructions?: string;
}

export interface ReActOptions extends ModuleOptions {
  tools: Tool[];
  /** Default 5. */
  maxIterations?: number;
}

export interface CodeActOptions extends ModuleOptions {
  /** Runs the code the model wrote (a sandbox of yours: the SDK never evaluates code). */
  execute(code: string): unknown;
  /** Default 5. */
  maxIterations?: number;
}

export interface AgentResult {
  /** The output fields of the finishing step (empty if the loop ran out). */
  output: Fields;
  trajectory: Step[];
  iterations: number;
  /** False when `maxIterations` ran out before `finish`. */
  finished: boolean;
}

export type Module<O = Fields> = (input: Fields) => Promise<O>;

const CONTROL = new Set(['thought', 'action', 'action_input', 'actionInput', 'code', 'finish']);

function stripControl(output: Fields): Fields {
  const out: Fields = {};
  for (const k of Object.keys(output)) if (!CONTROL.has(k)) out[k] = output[k];
  return out;
}

/** `maxIterations` as given when it is a whole number ≥ 1, else the default (5): NaN ran no iteration at all. */
function iterationsOf(n: number | undefined): number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 1 ? Math.floor(n) : 5;
}

/**
 * The finishing step's answer: its fields, or, when it gave none but `action_input` (DSPy.rb's
 * way of finishing: `finish` with the answer as its input), that input.
 */
function finalOutput(out: Fields, actionInput: unknown): Fields {
  const fields = stripControl(out);
  if (Object.keys(fields).length > 0 || actionInput === undefined) return fields;
  return typeof actionInput === 'object' && actionInput !== null && !Array.isArray(actionInput) ? (actionInput as Fields) : { answer: actionInput };
}

/**
 * `span.event(name, attributes)` for a module's step event: the values under `io` are the step's
 * inputs and outputs, so `captureIO: false` and `mask` apply to them as to `dspy.input`/`.output`.
 */
function stepEvent(s: SpanHandle, name: string, attributes: Readonly<Record<string, unknown>>, io: Readonly<Record<string, 'input' | 'output'>>): void {
  if (s instanceof SpanImpl) s.ioEvent(name, attributes, io);
  // Telemetry off (a no-op span): `event()` tells subscribers the active withTrace's trace, as
  // llm.generate does; the no-op span's own event() gave them none (a per-trace subscriber missed it).
  else event(name, attributes);
}

/** One LLM call as an `llm.generate` generation that a wrapped client call inside can adopt. */
async function callLM(llm: LM, request: LMRequest): Promise<Fields> {
  return runGeneration(
    SPAN_NAMES.llmGenerate,
    { input: request, module: request.module, signature: request.signature },
    async (g: GenerationHandle) => {
      const res = await llm(request);
      try {
        if (res?.model) g.setModel(res.model);
        if (res?.provider) g.setProvider(res.provider);
        if (res?.usage) g.setUsage(res.usage);
      } catch {
        /* a throwing getter on the answer: left out of the telemetry, not a failed run */
      }
      const output = res && typeof res.output === 'object' && res.output !== null ? res.output : {};
      if (!(g instanceof SpanImpl) || !g.hasOutput) g.setOutput(output);
      return output;
    },
    true,
  );
}

/** `Predict`: one LLM call. */
export function predict(signature: string, options: ModuleOptions): Module {
  return (input: Fields) =>
    span('Predict.forward', { type: 'span', module: 'Predict', signature, input }, async (s: SpanHandle) => {
      const output = await callLM(options.llm, { module: 'Predict', signature, instructions: options.instructions, input });
      s.setOutput(output);
      return output;
    });
}

/** `ChainOfThought`: one LLM call that also returns `reasoning`. */
export function chainOfThought(signature: string, options: ModuleOptions): Module {
  return (input: Fields) =>
    span('ChainOfThought.forward', { type: 'chain', module: 'ChainOfThought', signature, input }, async (s: SpanHandle) => {
      const output = await callLM(options.llm, { module: 'ChainOfThought', signature, instructions: options.instructions, input });
      const reasoning = typeof output.reasoning === 'string' ? output.reasoning : '';
      stepEvent(
        s,
        EVENT_NAMES.reasoningComplete,
        {
          'dspy.signature': signature,
          'cot.reasoning': reasoning,
          'cot.reasoning_length': reasoning.length,
          'cot.reasoning_steps': reasoning ? reasoning.split(/\n+/).filter((l) => l.trim()).length : 0,
          // DSPy.rb's event has it: subscribers written for DSPy.rb filter on it.
          'cot.has_reasoning': reasoning.length > 0,
        },
        { 'cot.reasoning': 'output' },
      );
      s.setOutput(output);
      return output;
    });
}

/** `ReAct`: think → act (a tool) → observe, until the model answers `finish` or `maxIterations`. */
export function react(signature: string, options: ReActOptions): Module<AgentResult> {
  const max = iterationsOf(options.maxIterations);
  // Names as DSPy.rb matches them: a model answering `Finish` or `Weather` means `finish` / `weather`.
  // Keyed lowercased for the match only: a tool is recorded by its own name (`GetWeather`).
  const tools = new Map(options.tools.map((t) => [t.name.toLowerCase(), t] as const));
  const toolOf = (action: string): Tool | undefined => options.tools.find((t) => t.name === action) ?? tools.get(action.toLowerCase());
  const toolInfos: ToolInfo[] = options.tools.map((t) => (t.description !== undefined ? { name: t.name, description: t.description } : { name: t.name }));
  return (input: Fields) =>
    span('ReAct.forward', { type: 'agent', module: 'ReAct', signature, input }, async (root: SpanHandle) => {
      const trajectory: Step[] = [];
      for (let iteration = 1; iteration <= max; iteration++) {
        const done = await span(
          SPAN_NAMES.reactIteration,
          { type: 'agent', attributes: { 'react.iteration': iteration, 'react.max_iterations': max } },
          async (it: SpanHandle) => {
            const out = await callLM(options.llm, {
              module: 'ReAct',
              signature,
              instructions: options.instructions,
              input,
              // A copy per call: an llm that adds to the list (a finish tool) or edits an entry
              // changed every later call of this run, and of every other run of this module.
              tools: toolInfos.map((t) => ({ ...t })),
              trajectory: stepsCopy(trajectory),
              iteration,
            });
            const thought = typeof out.thought === 'string' ? out.thought : undefined;
            const answered = typeof out.action === 'string' ? out.action.trim() : 'finish';
            const actionInput = out.action_input ?? out.actionInput;
            // `finish` (any case) always finishes; otherwise the tool's own name, else the model's word as written.
            const finishing = answered.toLowerCase() === 'finish';
            const tool = finishing ? undefined : toolOf(answered);
            const action = finishing ? 'finish' : (tool?.name ?? answered);
            if (action === 'finish') {
              const step: Step = actionInput === undefined ? { iteration, thought, action } : { iteration, thought, action, actionInput };
              trajectory.push(step);
              stepEvent(it, EVENT_NAMES.reactIterationComplete, { iteration, thought, action, finished: true }, { thought: 'output' });
              it.setOutput(step);
              return finalOutput(out, actionInput);
            }
            const observation = await span(
              SPAN_NAMES.reactToolCall,
              { type: 'tool', input: actionInput, attributes: { 'tool.name': action, 'react.iteration': iteration } },
              async (t: SpanHandle) => {
                // The tool's input, as dspy.input is captured (captureIO, mask).
                if (t instanceof SpanImpl) t.setAttribute('tool.input', t.ioValue(actionInput, 'input'));
                if (!tool) {
                  t.setLevel('WARNING');
                  t.setOutput(`Unknown tool: ${action}`);
                  return `Unknown tool: ${action}`;
                }
                try {
                  const result: unknown = await tool.run(actionInput);
                  t.setOutput(result);
                  return result;
                } catch (e) {
                  // A budget a tool's own LLM calls ran over stops the run: it is no observation
                  // for the model to read (that would pay for one more call).
                  if (e instanceof BudgetExceededError) throw e;
                  t.recordError(e);
                  return `Error: ${errorMessage(e)}`;
                }
              },
            );
            const step: Step = { iteration, thought, action, actionInput, observation };
            trajectory.push(step);
            stepEvent(
              it,
              EVENT_NAMES.reactIterationComplete,
              { iteration, thought, action, action_input: actionInput, observation },
              { thought: 'output', action_input: 'input', observation: 'output' },
            );
            it.setOutput(step);
            return undefined;
          },
        );
        if (done) {
          const result: AgentResult = { output: done, trajectory, iterations: iteration, finished: true };
          root.setOutput(done);
          return result;
        }
      }
      stepEvent(root, EVENT_NAMES.reactMaxIterations, { 'react.max_iterations': max, iterations: max }, {});
      root.setLevel('WARNING');
      return { output: {}, trajectory, iterations: max, finished: false };
    });
}

/** `CodeAct`: the model writes code, your `execute` runs it, the result feeds the next step. */
export function codeAct(signature: string, options: CodeActOptions): Module<AgentResult> {
  const max = iterationsOf(options.maxIterations);
  return (input: Fields) =>
    span('CodeAct.forward', { type: 'agent', module: 'CodeAct', signature, input }, async (root: SpanHandle) => {
      const trajectory: Step[] = [];
      for (let iteration = 1; iteration <= max; iteration++) {
        // One `codeact.iteration` span per step, as DSPy.rb's CodeAct (and ReAct's react.iteration).
        const done = await span(
          SPAN_NAMES.codeactIteration,
          { type: 'agent', attributes: { 'codeact.iteration': iteration, 'codeact.max_iterations': max } },
          async (it: SpanHandle): Promise<Fields | undefined> => {
            const out = await callLM(options.llm, { module: 'CodeAct', signature, instructions: options.instructions, input, trajectory: stepsCopy(trajectory), iteration });
            const thought = typeof out.thought === 'string' ? out.thought : undefined;
            const finishing = out.finish === true || (typeof out.action === 'string' && out.action.trim().toLowerCase() === 'finish');
            if (finishing || typeof out.code !== 'string') {
              const step: Step = { iteration, thought, action: 'finish' };
              trajectory.push(step);
              stepEvent(it, EVENT_NAMES.codeactIterationComplete, { iteration, thought, finished: true }, { thought: 'output' });
              it.setOutput(step);
              return finalOutput(out, out.action_input ?? out.actionInput);
            }
            const code = out.code;
            const result = await span(
              SPAN_NAMES.codeactExecution,
              { type: 'tool', input: code, attributes: { 'codeact.iteration': iteration, 'code.length': code.length } },
              async (s: SpanHandle): Promise<{ observation?: unknown; error?: string }> => {
                try {
                  const observation: unknown = await options.execute(code);
                  s.setOutput(observation);
                  return { observation };
                } catch (e) {
                  if (e instanceof BudgetExceededError) throw e; // stops the run, as in ReAct's tools
                  s.recordError(e);
                  return { error: errorMessage(e) };
                }
              },
            );
            const step: Step = { iteration, thought, code, ...result };
            trajectory.push(step);
            stepEvent(
              it,
              EVENT_NAMES.codeactIterationComplete,
              { iteration, thought, code, execution_result: result.observation, error: result.error },
              { thought: 'output', code: 'input', execution_result: 'output' },
            );
            it.setOutput(step);
            return undefined;
          },
        );
        if (done) {
          root.setOutput(done);
          return { output: done, trajectory, iterations: iteration, finished: true };
        }
      }
      // As DSPy.rb's CodeAct (and ReAct here) says it: out of iterations before an answer.
      stepEvent(root, EVENT_NAMES.codeactMaxIterations, { 'codeact.max_iterations': max, 'codeact.iteration_count': max }, {});
      root.setLevel('WARNING');
      return { output: {}, trajectory, iterations: max, finished: false };
    });
}

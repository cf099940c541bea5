"""A research agent: fetch web pages, search a folder of local documents, rank what was found and
have an LLM answer the question from it — each step durable, retried and audited by the engine.

- `tools.py`: the agent's tools (`http_fetch`, `doc_search`, `rank`), loaded by workers with
  `TOOL_MODULES=examples.research_agent.tools` or `python -m worker --tools examples.research_agent.tools`.
- `workflow.py`: the run, built with `durable_agent.Workflow`.
- `__main__.py`: `python -m examples.research_agent QUESTION --url URL --docs DIR [--start-worker]`.
"""

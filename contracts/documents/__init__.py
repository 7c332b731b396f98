"""The committed documents: JSON Schema of every contract, the AsyncAPI document, and one
render/write/drift check for each."""

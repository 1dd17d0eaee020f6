// Package repocheck holds the tests that look at the repository as a whole
// rather than at one package: that every package says in a doc comment what
// it is for (TestPackageDocs), that log attribute keys are constants
// (TestLogKeysAreConstants), and that the README's architecture drawing names
// every package and only files that exist (TestArchitectureDrawing). It has
// no code of its own.
package repocheck

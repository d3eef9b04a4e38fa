/** The ResNets we build (torchvision's names): apart from the model so the CLI can list them without loading TensorFlow.js. */
export type ResNetArch = 'resnet18' | 'resnet50';

export const RESNET_ARCHS: readonly ResNetArch[] = ['resnet18', 'resnet50'];
